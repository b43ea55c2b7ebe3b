import type { SendMailOptions } from 'nodemailer';
import type { RelayConfig } from '../config.ts';
import { redactSecrets } from '../redact.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import type { MailboxTransport } from './mailboxTransports.ts';
import { isTokenRejected, mapSmtpError, type SmtpFailure } from './smtpErrors.ts';

/**
 * The one sending pipeline for app-only and delegated mailboxes alike: make sure a token can be had (so an
 * identity failure surfaces as itself, not as an SMTP error), send through one of the mailbox's sessions
 * (shared/smtp/mailboxTransports.ts), and when
 * Exchange answers 535 5.7.3 to a token, fetch one fresh token and try once more (nothing was sent yet).
 */
export interface SendOutcome {
  messageId: string;
  accepted: string[];
  rejected: string[];
  response: string;
}

export interface MailSender {
  /**
   * Makes sure a token can be had before a session slot is taken: an identity failure (or a delegated
   * mailbox that needs a new sign-in) then costs no slot, and a pool can fail over at once.
   */
  prepare(mailbox: string): Promise<void>;
  /** Sends on `session`, a session of `mailbox` the caller holds. */
  send(mailbox: string, message: SendMailOptions, session: MailboxTransport): Promise<SendOutcome>;
}

export function createMailSender(smtp: RelayConfig['smtp'], tokens: MailboxTokenProvider): MailSender {
  const context = (mailbox: string) => ({ host: smtp.host, port: smtp.port, mailbox });

  async function deliver(session: MailboxTransport, message: SendMailOptions): Promise<SendOutcome> {
    const info = await session.sendMail(message);
    return {
      messageId: info.messageId,
      accepted: info.accepted.map(String),
      rejected: info.rejected.map(String),
      response: redactSecrets(info.response),
    };
  }

  return {
    async prepare(mailbox) {
      await tokens(mailbox, { forceRefresh: false });
    },
    async send(mailbox, message, session) {
      await tokens(mailbox, { forceRefresh: false });
      try {
        return await deliver(session, message);
      } catch (error) {
        if (!isTokenRejected(error as SmtpFailure)) throw mapSmtpError(error, context(mailbox));
      }
      await tokens(mailbox, { forceRefresh: true });
      try {
        return await deliver(session, message);
      } catch (error) {
        throw mapSmtpError(error, context(mailbox));
      }
    },
  };
}
