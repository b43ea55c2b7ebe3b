import type { SendMailOptions } from 'nodemailer';
import type { RelayConfig } from '../config.ts';
import { redactSecrets } from '../redact.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import type { MailboxTransports } from './mailboxTransports.ts';
import { isTokenRejected, mapSmtpError, type SmtpFailure } from './smtpErrors.ts';

/**
 * The one sending pipeline for app-only and delegated mailboxes alike: make sure a token can be had (so an
 * identity failure surfaces as itself, not as an SMTP error), send through the mailbox's pool, and when
 * Exchange answers 535 5.7.3 to a token, fetch one fresh token and try once more (nothing was sent yet).
 */
export interface SendOutcome {
  messageId: string;
  accepted: string[];
  rejected: string[];
  response: string;
}

export interface MailSender {
  send(mailbox: string, message: SendMailOptions): Promise<SendOutcome>;
}

export function createMailSender(
  smtp: RelayConfig['smtp'],
  tokens: MailboxTokenProvider,
  transports: MailboxTransports,
): MailSender {
  const context = (mailbox: string) => ({ host: smtp.host, port: smtp.port, mailbox });

  async function deliver(mailbox: string, message: SendMailOptions): Promise<SendOutcome> {
    const info = await transports.transportFor(mailbox).sendMail(message);
    return {
      messageId: info.messageId,
      accepted: info.accepted.map(String),
      rejected: info.rejected.map(String),
      response: redactSecrets(info.response),
    };
  }

  return {
    async send(mailbox, message) {
      await tokens(mailbox, { forceRefresh: false });
      try {
        return await deliver(mailbox, message);
      } catch (error) {
        if (!isTokenRejected(error as SmtpFailure)) throw mapSmtpError(error, context(mailbox));
      }
      await tokens(mailbox, { forceRefresh: true });
      try {
        return await deliver(mailbox, message);
      } catch (error) {
        throw mapSmtpError(error, context(mailbox));
      }
    },
  };
}
