import { connect as tcpConnect } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import MailComposer from 'nodemailer/lib/mail-composer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { RelayConfig } from '../config.ts';
import { ensureRelayError, invalidRequest, type RelayError } from '../errors.ts';
import { parseSendRequest, senderMailbox } from '../message.ts';
import { smtpConnectionOptions } from '../smtp/connectionOptions.ts';
import { mapSmtpError } from '../smtp/smtpErrors.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';

/**
 * "Test connection" for one mailbox, step by step, each failure with what to fix: token acquisition (the
 * AADSTS code comes through the identity error table), TCP connect, STARTTLS with the server's certificate
 * chain, AUTH XOAUTH2, and only when asked a test message. Steps after a failure are skipped.
 */
export type StepName = 'token' | 'tcp_connect' | 'starttls' | 'auth_xoauth2' | 'test_message';

export interface StepReport {
  step: StepName;
  outcome: 'ok' | 'failed' | 'skipped';
  durationMs: number;
  detail?: Record<string, unknown>;
  error?: { code: string; message: string; remedy?: string; details?: unknown };
}

export interface ConnectionCheckReport {
  mailbox: string;
  ok: boolean;
  steps: StepReport[];
}

export interface ConnectionCheckOptions {
  /** When set, a short test message is sent to this address; otherwise nothing is ever sent. */
  sendTo?: string;
}

function toStepError(error: RelayError): StepReport['error'] {
  return {
    code: error.code,
    message: error.message,
    ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
    ...(error.details === undefined ? {} : { details: error.details }),
  };
}

function describeChain(leaf: PeerCertificate | undefined): Record<string, unknown>[] {
  const chain: Record<string, unknown>[] = [];
  let certificate = leaf as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
  while (certificate !== undefined && chain.length < 10) {
    chain.push({
      subject: certificate.subject?.CN,
      issuer: certificate.issuer?.CN,
      validTo: certificate.valid_to,
      fingerprint256: certificate.fingerprint256,
    });
    const next = certificate.issuerCertificate as
      | (PeerCertificate & { issuerCertificate?: PeerCertificate })
      | undefined;
    if (next === undefined || next === certificate || next.fingerprint256 === certificate.fingerprint256)
      break;
    certificate = next;
  }
  return chain;
}

export type ConnectionCheck = (
  mailbox: string,
  options?: ConnectionCheckOptions,
) => Promise<ConnectionCheckReport>;

export function createConnectionCheck(
  smtp: RelayConfig['smtp'],
  tokens: MailboxTokenProvider,
): ConnectionCheck {
  const timeoutMs = smtp.timeoutSeconds * 1000;
  const connectionOptions = smtpConnectionOptions(smtp);
  const context = (mailbox: string) => ({ host: smtp.host, port: smtp.port, mailbox });

  function tcpStep(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host: smtp.host, port: smtp.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        const detail = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
        socket.destroy();
        resolve(detail);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  return async function checkConnection(
    mailbox: string,
    options: ConnectionCheckOptions = {},
  ): Promise<ConnectionCheckReport> {
    const steps: StepReport[] = [];
    let failed = false;
    let connection: SMTPConnection | undefined;
    let accessToken = '';
    let chain: Record<string, unknown>[] = [];

    async function run(
      step: StepName,
      action: () => Promise<Record<string, unknown>>,
      mapError: (error: unknown) => RelayError,
    ) {
      if (failed) {
        steps.push({ step, outcome: 'skipped', durationMs: 0 });
        return;
      }
      const started = Date.now();
      try {
        const detail = await action();
        steps.push({ step, outcome: 'ok', durationMs: Date.now() - started, detail });
      } catch (error) {
        failed = true;
        steps.push({
          step,
          outcome: 'failed',
          durationMs: Date.now() - started,
          error: toStepError(mapError(error)),
        });
      }
    }

    const smtpError = (error: unknown) => mapSmtpError(error, context(mailbox));

    await run(
      'token',
      async () => {
        const token = await tokens(mailbox, { forceRefresh: false });
        accessToken = token.accessToken;
        return { renewAfter: token.renewAfter.toISOString() };
      },
      ensureRelayError,
    );
    await run('tcp_connect', tcpStep, (error) => {
      const relayError = smtpError(error);
      return Object.assign(relayError, {
        remedy: `Allow outbound TCP ${smtp.port} from the Function App to ${smtp.host} (NSG, firewall, VNet route); check RELAY_SMTP_HOST and RELAY_SMTP_PORT.`,
      });
    });
    await run(
      'starttls',
      async () => {
        connection = new SMTPConnection({
          ...connectionOptions,
          tls: {
            ...connectionOptions.tls,
            // Called only for a chain that verified: keep it for the report, then check the name as usual.
            checkServerIdentity: (host: string, certificate: PeerCertificate) => {
              chain = describeChain(certificate);
              return checkServerIdentity(host, certificate);
            },
          },
        });
        const opened = connection;
        opened.on('error', () => undefined);
        await new Promise<void>((resolve, reject) => {
          opened.once('error', reject);
          opened.connect(() => resolve());
        });
        return { secure: opened.secure, certificateChain: chain };
      },
      smtpError,
    );
    await run(
      'auth_xoauth2',
      async () => {
        const opened = connection as SMTPConnection;
        await new Promise<void>((resolve, reject) => {
          opened.login(
            { user: mailbox, method: 'XOAUTH2', oauth2: new XOAuth2({ user: mailbox, accessToken }) },
            (error) => (error ? reject(error) : resolve()),
          );
        });
        return { user: mailbox };
      },
      smtpError,
    );
    if (options.sendTo !== undefined) {
      const recipient = options.sendTo;
      await run(
        'test_message',
        async () => {
          const opened = connection as SMTPConnection;
          const raw = await new MailComposer({
            from: mailbox,
            to: recipient,
            subject: 'm365-mail-relay connection test',
            text: `This test message was sent by m365-mail-relay from ${mailbox} to check that it can send.`,
          })
            .compile()
            .build();
          const info = await new Promise<{ response: string; messageId?: string }>((resolve, reject) => {
            opened.send({ from: mailbox, to: [recipient] }, raw, (error, result) =>
              error ? reject(error) : resolve(result as { response: string }),
            );
          });
          return { to: recipient, response: info.response };
        },
        smtpError,
      );
    }
    connection?.quit();
    return { mailbox, ok: !failed, steps };
  };
}

/**
 * The admin's request: the mailbox from the route and an optional `{ "sendTo": "<address>" }` body. Both
 * go through the send schema, so they meet the same address checks as any message.
 */
export function parseConnectionCheckRequest(
  mailboxParameter: string,
  body: unknown,
  limits: RelayConfig['limits'],
): { mailbox: string; options: ConnectionCheckOptions } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest([
      { field: '(body)', message: 'must be a JSON object such as {"sendTo": "<address>"}' },
    ]);
  }
  const { sendTo } = body as { sendTo?: unknown };
  const probe = parseSendRequest(
    { from: mailboxParameter, to: sendTo ?? 'nobody@example.invalid', subject: 'test', text: 'test' },
    limits,
  );
  const recipient = sendTo === undefined ? undefined : probe.to[0]?.address;
  return { mailbox: senderMailbox(probe), options: recipient === undefined ? {} : { sendTo: recipient } };
}
