import nodemailer, { type Transporter } from 'nodemailer';
import type { SMTPPoolOptions, SMTPPoolSentMessageInfo } from 'nodemailer/lib/smtp-pool';
import type { RelayConfig } from '../config.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import { smtpConnectionOptions } from './connectionOptions.ts';

/**
 * One pooled nodemailer transport per sender mailbox, created on first use and reused across sends.
 * Exchange Online allows at most 3 concurrent SMTP AUTH connections per mailbox (432 4.3.2 beyond), so the
 * pool never opens more than the configured maximum; further sends queue inside nodemailer's pool.
 * Each new connection asks the relay's token cache for a token through nodemailer's provisionCallback.
 */
export type MailboxTransport = Transporter<SMTPPoolSentMessageInfo, SMTPPoolOptions>;

export interface MailboxTransports {
  transportFor(mailbox: string): MailboxTransport;
  /** Closes every pooled connection; used at shutdown and by tests. */
  closeAll(): void;
}

export function createMailboxTransports(
  smtp: RelayConfig['smtp'],
  tokens: MailboxTokenProvider,
): MailboxTransports {
  const transports = new Map<string, MailboxTransport>();
  const connection = smtpConnectionOptions(smtp);

  function createTransport(mailbox: string): MailboxTransport {
    return nodemailer.createTransport({
      pool: true,
      maxConnections: smtp.maxConnectionsPerMailbox,
      maxMessages: 100,
      ...connection,
      disableFileAccess: true,
      disableUrlAccess: true,
      auth: {
        type: 'OAuth2',
        user: mailbox,
        provisionCallback: (_user, renew, callback) => {
          tokens(mailbox, { forceRefresh: renew }).then(
            // Passing the expiry matters: without it nodemailer keeps a token forever.
            (token) => callback(null, token.accessToken, token.renewAfter.getTime()),
            (error: Error) => callback(error),
          );
        },
      },
    });
  }

  return {
    transportFor(mailbox) {
      const key = mailbox.toLowerCase();
      let transport = transports.get(key);
      if (transport === undefined) {
        transport = createTransport(key);
        transports.set(key, transport);
      }
      return transport;
    },
    closeAll() {
      for (const transport of transports.values()) transport.close();
      transports.clear();
    },
  };
}
