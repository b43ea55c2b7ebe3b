import { authorizeSender, type Caller } from './callers.ts';
import { type SendRequest, senderMailbox, toMailOptions } from './message.ts';
import type { MailSender, SendOutcome } from './smtp/mailSender.ts';
import type { RateLimiter } from './smtp/rateLimiter.ts';

/**
 * The relay's one use case: a caller asks to send a validated message. The caller must have been granted
 * the sender (`authorizeMessage`, the one sender check; a relay send takes only an authorized message), so
 * nothing touches tokens or SMTP before that. Each send takes a slot of the sender mailbox's message rate
 * first, waiting a bounded time for one.
 */
export interface AuthorizedMessage {
  caller: Caller;
  sender: string;
  request: SendRequest;
}

export function authorizeMessage(caller: Caller, request: SendRequest): AuthorizedMessage {
  const sender = senderMailbox(request);
  authorizeSender(caller, sender);
  return { caller, sender, request };
}

export interface SendResult extends SendOutcome {
  sender: string;
}

export interface SendOptions {
  /** A Message-ID chosen in advance, so every attempt of a queued message carries the same one. */
  messageId?: string;
  /** How long to wait for a rate slot before 429; the configured default when omitted. */
  maxRateWaitMs?: number;
}

export interface Relay {
  send(message: AuthorizedMessage, options?: SendOptions): Promise<SendResult>;
}

export function createRelay(mailSender: MailSender, limiter?: RateLimiter, defaultRateWaitMs = 0): Relay {
  return {
    async send({ sender, request }, options = {}) {
      await limiter?.reserve(sender, options.maxRateWaitMs ?? defaultRateWaitMs);
      const mail = toMailOptions(request);
      if (options.messageId !== undefined) mail.messageId = options.messageId;
      const outcome = await mailSender.send(sender, mail);
      return { sender, ...outcome };
    },
  };
}
