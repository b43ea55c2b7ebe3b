import type { SendMailOptions } from 'nodemailer';
import { authorizeSender, type Caller } from './callers.ts';
import type { SenderRouteRule } from './config.ts';
import { RelayError } from './errors.ts';
import { type SendRequest, senderMailbox, toMailOptions } from './message.ts';
import {
  grantCommand,
  rightName,
  type SenderRelation,
  type SenderRoute,
  type SenderRouter,
} from './senderRoutes.ts';
import type { MailSender, SendOutcome } from './smtp/mailSender.ts';
import type { RateLimiter } from './smtp/rateLimiter.ts';
import { requiresSignIn } from './tokens/delegatedTokenSource.ts';

/**
 * The relay's one use case: a caller asks to send a validated message. The caller must have been granted
 * the From address (`authorizeMessage`, the one sender check; a relay send takes only an authorized
 * message), so nothing touches tokens or SMTP before that. The sender route then says which mailbox signs
 * in for that address (shared/senderRoutes.ts); every limit is that mailbox's, since Exchange counts per
 * signed-in mailbox. Each send takes a slot of its message rate first, waiting a bounded time for one.
 */
export interface AuthorizedMessage {
  caller: Caller;
  /** The From address the caller was authorized for, lower case. */
  sender: string;
  request: SendRequest;
}

export function authorizeMessage(caller: Caller, request: SendRequest): AuthorizedMessage {
  const sender = senderMailbox(request);
  authorizeSender(caller, sender);
  return { caller, sender, request };
}

export interface SendResult extends SendOutcome {
  /** The mailbox that signed in to Exchange, lower case. */
  sender: string;
  /** The From address recipients see, lower case. */
  from: string;
  relation: SenderRelation;
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

export interface RelayDependencies {
  mailSender: MailSender;
  router: SenderRouter;
  limiter?: RateLimiter | undefined;
  defaultRateWaitMs?: number;
}

export function createRelay({
  mailSender,
  router,
  limiter,
  defaultRateWaitMs = 0,
}: RelayDependencies): Relay {
  // Sends under way per signed-in mailbox: a pool member with fewer has more of its 3 connections free.
  const inFlight = new Map<string, number>();

  /**
   * The pool member with the most headroom: one that can send now before one that must wait for a rate
   * slot, then the one with the fewest sends under way (free connections), then the most free rate slots.
   * The choice and the slot reservation below happen in one synchronous step, so concurrent sends spread.
   */
  function mostHeadroom(candidates: readonly string[]): string {
    if (candidates.length === 1) return candidates[0] as string;
    const score = (mailbox: string) => {
      const { waitMs, freeSlots } = limiter?.headroom(mailbox) ?? { waitMs: 0, freeSlots: 0 };
      return { wait: waitMs, busy: inFlight.get(mailbox) ?? 0, free: freeSlots };
    };
    let best = candidates[0] as string;
    let bestScore = score(best);
    for (const mailbox of candidates.slice(1)) {
      const next = score(mailbox);
      const better =
        next.wait !== bestScore.wait
          ? next.wait < bestScore.wait
          : next.busy !== bestScore.busy
            ? next.busy < bestScore.busy
            : next.free > bestScore.free;
      if (better) {
        best = mailbox;
        bestScore = next;
      }
    }
    return best;
  }

  async function sendThrough(
    signIn: string,
    route: SenderRoute,
    request: SendRequest,
    options: SendOptions,
  ): Promise<SendResult> {
    await limiter?.reserve(signIn, options.maxRateWaitMs ?? defaultRateWaitMs);
    const mail = addressedFor(toMailOptions(request), request, route.relation, signIn);
    if (options.messageId !== undefined) mail.messageId = options.messageId;
    inFlight.set(signIn, (inFlight.get(signIn) ?? 0) + 1);
    try {
      const outcome = await mailSender.send(signIn, mail);
      return { sender: signIn, from: route.from, relation: route.relation, ...outcome };
    } finally {
      const left = (inFlight.get(signIn) ?? 1) - 1;
      if (left === 0) inFlight.delete(signIn);
      else inFlight.set(signIn, left);
    }
  }

  return {
    async send({ sender, request }, options = {}) {
      const route = router.route(sender);
      let candidates = route.signIn;
      for (;;) {
        const signIn = mostHeadroom(candidates);
        try {
          return await sendThrough(signIn, route, request, options);
        } catch (error) {
          if (!(error instanceof RelayError)) throw error;
          // A pool member that needs a new sign-in failed at its token, before any SMTP byte: the others
          // can still carry the message. Its own health record and /api/status say what to fix.
          candidates = candidates.filter((mailbox) => mailbox !== signIn);
          if (!requiresSignIn(error) || candidates.length === 0) throw withRoute(error, route, signIn);
        }
      }
    },
  };
}

/**
 * Exchange checks the right to use the From address against the mailbox that signed in, after DATA. The
 * envelope sender is that mailbox (which then also receives bounces), and on behalf of another address the
 * `Sender:` header must name it (RFC 5322 3.6.2), which Outlook shows as "<sender> on behalf of <from>".
 */
function addressedFor(
  mail: SendMailOptions,
  request: SendRequest,
  relation: SenderRelation,
  signIn: string,
): SendMailOptions {
  if (relation === 'self') return mail;
  const recipients = [...request.to, ...request.cc, ...request.bcc].map((recipient) => recipient.address);
  return {
    ...mail,
    envelope: { from: signIn, to: recipients },
    ...(relation === 'sendOnBehalf' ? { sender: signIn } : {}),
  };
}

/** A refused Send As / on behalf names the two real addresses and the command that grants the right. */
function withRoute(error: RelayError, route: SenderRoute, signIn: string): RelayError {
  if (error.code !== 'send_as_denied' || route.relation === 'self') return error;
  return sendAsDenied(error, route.from, signIn, route.relation);
}

export function sendAsDenied(
  error: RelayError,
  from: string,
  signIn: string,
  relation: SenderRouteRule['relation'],
): RelayError {
  const preposition = relation === 'sendOnBehalf' ? 'on behalf of' : 'as';
  return new RelayError('send_as_denied', {
    message: `Exchange Online refused ${signIn} sending ${preposition} ${from}: ${signIn} has no ${rightName(relation)} right on it.`,
    remedy: `Grant the mailbox that signs in (${signIn}; Exchange checks its right, whether the relay signs in app-only or delegated) ${rightName(relation)} on ${from}: ${grantCommand(relation, from, signIn)}. Exchange applies permission changes within about 2 hours. npm run exchange-setup prints this for every route.`,
    details: {
      ...(error.details as Record<string, unknown> | undefined),
      from,
      signedInAs: signIn,
      relation,
    },
  });
}
