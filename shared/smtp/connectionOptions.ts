import type { ConnectionOptions } from 'node:tls';
import { getCACertificates } from 'node:tls';
import type { RelayConfig } from '../config.ts';

/**
 * How the relay connects to Exchange: STARTTLS required (never a message or a token over a connection that
 * did not upgrade), TLS 1.2 or later, certificates verified, and the configured timeouts. Sending and the
 * "test connection" diagnostics both use this, so the diagnostics test exactly what sending does.
 */
export interface SmtpConnectionOptions {
  host: string;
  port: number;
  secure: false;
  requireTLS: true;
  tls: ConnectionOptions;
  connectionTimeout: number;
  greetingTimeout: number;
  socketTimeout: number;
}

export function smtpConnectionOptions(smtp: RelayConfig['smtp']): SmtpConnectionOptions {
  const timeoutMs = smtp.timeoutSeconds * 1000;
  return {
    host: smtp.host,
    port: smtp.port,
    secure: false,
    requireTLS: true,
    tls: {
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      servername: smtp.host,
      // `ca` replaces Node's default trust store, so an extra CA goes in beside the defaults (Exchange's
      // public chain must still verify); without one, `ca` is left out and the defaults apply.
      ...(smtp.extraCaPem === undefined ? {} : { ca: [...getCACertificates('default'), smtp.extraCaPem] }),
    },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  };
}
