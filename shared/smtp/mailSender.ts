import type { SendMailOptions } from 'nodemailer';
import type { RelayConfig } from '../config.ts';
import { redactSecrets } from '../redact.ts';
import type { MailboxTokenProvider, ReusableToken } from '../tokens/accessToken.ts';
import { isSignedIn, logInWith, type MailboxTransport } from './mailboxTransports.ts';
import { isTokenRejected, mapSmtpError, type SmtpFailure } from './smtpErrors.ts';

/**
 * The one sending pipeline for app-only and delegated mailboxes alike: ask for the token and, while it is on
 * its way, open the SMTP connection (the session's login waits for the token in nodemailer's
 * provisionCallback), so a cold send pays the longer of the two rather than their sum. An identity failure
 * still surfaces as itself, not as the SMTP login failure it causes, and before any message byte. Sends go
 * through one of the mailbox's sessions (shared/smtp/mailboxTransports.ts); when Exchange answers 535 5.7.3
 * to a token, fetch one fresh token and try once more (nothing was sent yet).
 */
export interface SendOutcome {
  messageId: string;
  accepted: string[];
  rejected: string[];
  response: string;
}

export interface MailSender {
  /**
   * Starts the token request before a session slot is taken, and fails when the token provider already
   * knows the answer is a failure (a delegated mailbox that needs a new sign-in, a cached refusal): that
   * costs no slot, and a pool can fail over at once. A request still on its way is left to run while the
   * session connects; should it fail, the send fails with its error and the session is given up at once.
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

  /** The token for the mailbox's next login: joins a request under way (the token cache is single-flight). */
  function tokenFor(mailbox: string): Promise<ReusableToken> {
    const token = tokens(mailbox, { forceRefresh: false });
    // Read only when the send fails; never an unhandled rejection when a live session needed no login.
    token.catch(() => undefined);
    return token;
  }

  return {
    async prepare(mailbox) {
      const token = tokenFor(mailbox);
      // A provider that answers from memory settles before the next turn of the event loop; one that has
      // to ask Entra ID or the vault does not, and is overlapped with the connection instead.
      await Promise.race([token, new Promise((resolve) => setImmediate(resolve))]);
    },
    async send(mailbox, message, session) {
      const token = tokenFor(mailbox);
      // Only a login waits for the token, and a session that logged in already will not log in again: the
      // token request is also where a disconnected mailbox or an unreadable credential is refused, so on
      // such a session the message waits for it (a cached token answers at once).
      if (isSignedIn(session)) await token;
      else logInWith(session, token);
      try {
        return await deliver(session, message);
      } catch (error) {
        // The login failed for want of a token: the identity failure is the cause to report.
        await token;
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
