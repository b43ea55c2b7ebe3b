import { authorizeSender, type Caller } from './callers.ts';
import { type SendRequest, senderMailbox, toMailOptions } from './message.ts';
import type { MailSender, SendOutcome } from './smtp/mailSender.ts';

/**
 * The relay's one use case: a caller asks to send a validated message. The caller must have been granted
 * the sender; only then does anything touch tokens or SMTP.
 */
export interface SendResult extends SendOutcome {
  sender: string;
}

export interface Relay {
  send(caller: Caller, request: SendRequest): Promise<SendResult>;
}

export function createRelay(mailSender: MailSender): Relay {
  return {
    async send(caller, request) {
      const sender = senderMailbox(request);
      authorizeSender(caller, sender);
      const outcome = await mailSender.send(sender, toMailOptions(request));
      return { sender, ...outcome };
    },
  };
}
