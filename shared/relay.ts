import { setTimeout as sleep } from 'node:timers/promises';
import type { SendMailOptions } from 'nodemailer';
import { authorizeSender, type Caller } from './callers.ts';
import type { SenderRouteRule } from './config.ts';
import { RelayError } from './errors.ts';
import type { MailboxLimits } from './limits/mailboxLimits.ts';
import { LATE_START_MS } from './limits/sendSchedule.ts';
import { canonicalMailbox } from './mailAddress.ts';
import { recipientCount, type SendRequest, senderMailbox, toMailOptions } from './message.ts';
import type { RawMessage } from './rawMime/rawMessage.ts';
import {
  grantCommand,
  rightName,
  type SenderRelation,
  type SenderRoute,
  type SenderRouter,
} from './senderRoutes.ts';
import { IDLE_SESSION_MS, type MailboxTransports } from './smtp/mailboxTransports.ts';
import type { MailSender, SendOutcome } from './smtp/mailSender.ts';
import { requiresSignIn } from './tokens/delegatedTokenSource.ts';

/**
 * The relay's one use case: a caller asks to send a validated message. The caller must have been granted
 * the From address (`authorizeMessage`, the one sender check; a relay send takes only an authorized
 * message), so nothing touches tokens or SMTP before that. The sender route then says which mailbox signs
 * in for that address (shared/senderRoutes.ts); every limit is that mailbox's, since Exchange counts per
 * signed-in mailbox, over every instance: each send holds one of the mailbox's SMTP sessions and starts at
 * a start reserved in its shared schedule, waiting a bounded time for both (shared/limits/).
 */
export type AuthorizedMessage = AuthorizedRequest | AuthorizedRawMessage;

interface Authorized {
  caller: Caller;
  /** The From address the caller was authorized for, lower case. */
  sender: string;
}

/** A JSON send request (shared/message.ts), which nodemailer composes. */
export interface AuthorizedRequest extends Authorized {
  request: SendRequest;
  raw?: undefined;
}

/** A raw MIME message (shared/rawMime/), sent as the caller composed it. */
export interface AuthorizedRawMessage extends Authorized {
  raw: RawMessage;
  request?: undefined;
}

export function authorizeMessage(caller: Caller, request: SendRequest): AuthorizedRequest {
  const sender = senderMailbox(request);
  authorizeSender(caller, sender);
  return { caller, sender, request };
}

/** The raw message's one From mailbox, checked exactly as a JSON send's `from`. */
export function authorizeRawMessage(caller: Caller, raw: RawMessage): AuthorizedRawMessage {
  const sender = canonicalMailbox(raw.from.address);
  authorizeSender(caller, sender);
  return { caller, sender, raw };
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
  /** How long a synchronous send waits for its start before 429; the configured default when omitted. */
  maxWaitMs?: number;
  /**
   * A queued message: it starts at its reserved start when it has one for a mailbox of its route (reserved
   * when it was accepted), else it reserves the next start however late; a start more than a moment away
   * throws SendDeferred, and the queue holds the message invisible until then.
   */
  queued?: { reserved?: ReservedStart | undefined };
}

/** A start reserved in a mailbox's shared schedule (shared/limits/mailboxLimits.ts). */
export interface ReservedStart {
  /** The mailbox that signs in. */
  mailbox: string;
  /** ms since the epoch. */
  at: number;
}

/** A queued message's start is later: nothing was sent, its start is reserved. */
export class SendDeferred extends Error {
  readonly start: ReservedStart;
  constructor(start: ReservedStart) {
    super(`send deferred to ${new Date(start.at).toISOString()}`);
    this.name = 'SendDeferred';
    this.start = start;
  }
}

export interface Relay {
  send(message: AuthorizedMessage, options?: SendOptions): Promise<SendResult>;
  /** Reserves a queued message's start, on the member of its route with the most headroom. */
  schedule(message: AuthorizedMessage): Promise<ReservedStart>;
}

export interface RelayDependencies {
  mailSender: MailSender;
  router: SenderRouter;
  transports: MailboxTransports;
  limits: MailboxLimits;
  /** How long a synchronous send waits for its start (RELAY_RATE_LIMIT_WAIT_SECONDS). */
  defaultWaitMs?: number;
  /** How long a synchronous send waits for one of the mailbox's sessions (one SMTP timeout). */
  syncSessionWaitMs: number;
  /**
   * Told how each attempt through a signed-in mailbox ended (shared/health/): a sign-in or credential
   * failure marks its health, a success clears a recorded failure. Never fails or noticeably delays a send.
   */
  recordOutcome?: (signIn: string, error?: RelayError) => Promise<void>;
  now?: () => number;
}

/** A queued message waits this long for a session: longer than an idle session elsewhere keeps its slot. */
export const QUEUED_SESSION_WAIT_MS = IDLE_SESSION_MS + 5_000;
/** A queued message that arrives this close to its start waits for it rather than going back to the queue. */
const EARLY_WAIT_MS = 3_000;

export function createRelay({
  mailSender,
  router,
  transports,
  limits,
  defaultWaitMs = 0,
  syncSessionWaitMs,
  recordOutcome,
  now = Date.now,
}: RelayDependencies): Relay {
  // Recorded before the caller hears of it, so /api/status and /api/health agree with the answer; a slow
  // store holds the answer at most 2 s (the record then lands in the background).
  async function noteOutcome(signIn: string, error?: RelayError): Promise<void> {
    if (recordOutcome === undefined) return;
    const patience = new AbortController();
    const recorded = recordOutcome(signIn, error).catch(() => undefined);
    const gaveUp = sleep(2_000, undefined, { ref: false, signal: patience.signal }).catch(() => undefined);
    await Promise.race([recorded, gaveUp]);
    patience.abort();
  }

  // Sends under way per signed-in mailbox: a pool member with fewer has more of its 3 sessions free.
  const inFlight = new Map<string, number>();
  const adjustInFlight = (mailbox: string, by: number) => {
    const count = (inFlight.get(mailbox) ?? 0) + by;
    if (count <= 0) inFlight.delete(mailbox);
    else inFlight.set(mailbox, count);
  };

  /**
   * The pool member with the most headroom: one that can send now before one that must wait for a start,
   * then the one with the fewest sends under way here (free sessions), then the most free starts. The
   * shared schedules are read together; the choice is then made and counted in one synchronous step, so
   * a burst spreads over the members.
   */
  async function mostHeadroom(candidates: readonly string[], counted: boolean): Promise<string> {
    const chosen = (mailbox: string) => {
      if (counted) adjustInFlight(mailbox, 1);
      return mailbox;
    };
    if (candidates.length === 1) return chosen(candidates[0] as string);
    const rooms = await Promise.all(candidates.map((mailbox) => limits.headroom(mailbox)));
    const score = (index: number) => ({
      wait: rooms[index]?.waitMs ?? 0,
      busy: inFlight.get(candidates[index] as string) ?? 0,
      free: rooms[index]?.freeSlots ?? 0,
    });
    let best = 0;
    let bestScore = score(0);
    for (let index = 1; index < candidates.length; index += 1) {
      const next = score(index);
      const better =
        next.wait !== bestScore.wait
          ? next.wait < bestScore.wait
          : next.busy !== bestScore.busy
            ? next.busy < bestScore.busy
            : next.free > bestScore.free;
      if (better) {
        best = index;
        bestScore = next;
      }
    }
    return chosen(candidates[best] as string);
  }

  async function sendThrough(
    signIn: string,
    route: SenderRoute,
    message: AuthorizedMessage,
    options: SendOptions,
  ): Promise<SendResult> {
    const { queued } = options;
    await mailSender.prepare(signIn);
    // A queued message that has its start waits for it before taking a session, so waiting messages do
    // not hold the mailbox's few sessions; one that then starts too late reserves again.
    const reserved = queued?.reserved?.mailbox === signIn ? queued.reserved : undefined;
    if (reserved !== undefined) {
      if (reserved.at - now() > EARLY_WAIT_MS) throw new SendDeferred(reserved);
      if (reserved.at > now()) await sleep(reserved.at - now());
    }
    // A synchronous send takes the session first, then its start, so it starts the moment its start comes.
    // A session frees when its message is done, which takes at most one SMTP timeout.
    const sessionWaitMs = queued === undefined ? syncSessionWaitMs : QUEUED_SESSION_WAIT_MS;
    return transports.withSession(signIn, sessionWaitMs, async (session) => {
      const deadline = now() + (options.maxWaitMs ?? defaultWaitMs);
      const at =
        reserved !== undefined && now() <= reserved.at + LATE_START_MS
          ? reserved.at
          : await limits.reserve(
              signIn,
              { recipients: recipientsOf(message), spaced: queued !== undefined },
              queued === undefined ? Math.max(0, deadline - now()) : undefined,
            );
      if (queued !== undefined && at - now() > EARLY_WAIT_MS) throw new SendDeferred({ mailbox: signIn, at });
      if (at > now()) await sleep(at - now());
      const mail = mailOptionsFor(message, route.relation, signIn, options);
      try {
        const outcome = await mailSender.send(signIn, mail, session);
        return { sender: signIn, from: route.from, relation: route.relation, ...outcome };
      } catch (caught) {
        // A raw message's own stream failing (too large, the request cut off) is the caller's problem, not
        // the mailbox's: nodemailer closed the connection before the terminating dot, so nothing was sent.
        const error = message.raw?.failure() ?? caught;
        if (error instanceof RelayError && error.code === 'recipient_quota_exceeded') {
          await limits.parkAfterQuotaRefusal(signIn).catch(() => undefined);
        }
        throw error;
      }
    });
  }

  return {
    async send(message, options = {}) {
      const { sender } = message;
      const route = router.route(sender);
      let candidates = route.signIn;
      const reserved = options.queued?.reserved?.mailbox;
      for (;;) {
        // Counted as under way when chosen, in the same synchronous step as the choice.
        let signIn: string;
        if (reserved !== undefined && candidates.includes(reserved)) {
          signIn = reserved;
          adjustInFlight(signIn, 1);
        } else {
          signIn = await mostHeadroom(candidates, true);
        }
        try {
          const result = await sendThrough(signIn, route, message, options);
          await noteOutcome(signIn);
          return result;
        } catch (error) {
          if (!(error instanceof RelayError)) throw error;
          await noteOutcome(signIn, error);
          // A pool member that needs a new sign-in failed at its token, before any SMTP byte, and one over
          // its daily quota refused before accepting: the others can still carry the message. Its own
          // health record and /api/status say what to fix.
          candidates = candidates.filter((mailbox) => mailbox !== signIn);
          const another = requiresSignIn(error) || error.code === 'recipient_quota_exceeded';
          if (!another || candidates.length === 0) throw withRoute(error, route, signIn);
        } finally {
          adjustInFlight(signIn, -1);
        }
      }
    },
    async schedule(message) {
      const mailbox = await mostHeadroom(router.route(message.sender).signIn, false);
      const at = await limits.reserve(mailbox, { recipients: recipientsOf(message), spaced: true });
      return { mailbox, at };
    },
  };
}

const recipientsOf = ({ request, raw }: AuthorizedMessage) =>
  raw?.recipients.length ?? (request === undefined ? 0 : recipientCount(request));

/**
 * A JSON request composed by nodemailer, or a raw message as written; a queued JSON message carries the
 * Message-ID chosen when it was accepted (a raw one has its own in its header).
 */
function mailOptionsFor(
  { request, raw }: AuthorizedMessage,
  relation: SenderRelation,
  signIn: string,
  options: SendOptions,
): SendMailOptions {
  if (raw !== undefined) return raw.mailOptions(relation, signIn);
  if (request === undefined) throw new RelayError('internal_error');
  const mail = addressedFor(toMailOptions(request), request, relation, signIn);
  if (options.messageId !== undefined) mail.messageId = options.messageId;
  return mail;
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
