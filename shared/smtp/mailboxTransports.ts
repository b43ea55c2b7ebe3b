import nodemailer, { type Transporter } from 'nodemailer';
import type { SMTPPoolOptions, SMTPPoolSentMessageInfo } from 'nodemailer/lib/smtp-pool';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import { type HeldSlot, SESSION_RENEW_MS, type SessionSlotStore } from '../limits/limitStores.ts';
import type { MailboxTokenProvider, ReusableToken } from '../tokens/accessToken.ts';
import { smtpConnectionOptions } from './connectionOptions.ts';

/**
 * The relay's SMTP sessions. Exchange Online allows at most 3 concurrent SMTP AUTH sessions per mailbox
 * (432 4.3.2 at a 4th), counted over every client, so each session first takes one of the mailbox's
 * session slots, which every instance shares (shared/limits/limitStores.ts). A session is one SMTP
 * connection (a nodemailer pool of one, so the connection and its login are reused), carries one message
 * at a time, and keeps its slot renewed while it lives. A session idle for IDLE_SESSION_MS (2 s) is closed and
 * its slot given back, so another instance can use it and nothing is kept per sender that is not used.
 * At most MAX_LIVE_SESSIONS live in one instance: beyond that the least recently used idle one is closed.
 * Each new connection asks the relay's token cache for a token through nodemailer's provisionCallback, once
 * connected: the token may still be on its way while the connection opens (shared/smtp/mailSender.ts). A
 * session whose login found no token is given up when its use ends, so its slot does not wait for the idle
 * timeout.
 */
export type MailboxTransport = Transporter<SMTPPoolSentMessageInfo, SMTPPoolOptions>;

export interface MailboxTransports {
  /**
   * Runs `use` on one of this instance's sessions for the mailbox, waiting at most `maxWaitMs` for a free
   * session slot; when none frees, 429 `mailbox_busy`.
   */
  withSession<T>(
    mailbox: string,
    maxWaitMs: number,
    use: (transport: MailboxTransport) => Promise<T>,
  ): Promise<T>;
  /** Holds one of the mailbox's session slots for a connection of the caller's own (the connection test). */
  withSlot<T>(mailbox: string, maxWaitMs: number, use: () => Promise<T>): Promise<T>;
  /** Sessions open in this instance now. */
  readonly liveSessions: number;
  /** Closes every session and gives its slot back; used at shutdown and by tests. */
  closeAll(): Promise<void>;
}

// Sessions whose connection has logged in: their next message asks for no token, so whoever sends on one
// must check the token itself (shared/smtp/mailSender.ts). Weak, so a closed session is forgotten with it.
const signedIn = new WeakSet<MailboxTransport>();

// The token request a send started for a session that is about to log in: its login uses that very request,
// so a request that failed is the send's failure and not asked again behind its back (Key Vault's 429 says
// when to ask again).
const loginTokens = new WeakMap<MailboxTransport, Promise<ReusableToken>>();

/** The login of this session's next connection uses `token` (a renewal after a refused token asks anew). */
export function logInWith(transport: MailboxTransport, token: Promise<ReusableToken>): void {
  loginTokens.set(transport, token);
}

/** Whether the session has logged in already, so a message sent on it would not wait for a token. */
export function isSignedIn(transport: MailboxTransport): boolean {
  return signedIn.has(transport);
}

// Short: an idle session's slot is one another instance may be waiting for, and nothing tells the holder.
// Within a burst or a backlog the connection is still reused.
export const IDLE_SESSION_MS = 2_000;
export const MAX_LIVE_SESSIONS = 64;
const FIRST_PAUSE_MS = 25;
const LONGEST_PAUSE_MS = 500;

interface Session {
  key: string;
  held: HeldSlot;
  /** Undefined for a slot held for the connection test's own connection. */
  transport: MailboxTransport | undefined;
  busy: boolean;
  lost: boolean;
  lastUsed: number;
  idleTimer?: NodeJS.Timeout;
  renewTimer: NodeJS.Timeout;
}

export function createMailboxTransports(
  smtp: RelayConfig['smtp'],
  tokens: MailboxTokenProvider,
  slots: SessionSlotStore,
): MailboxTransports {
  const connection = smtpConnectionOptions(smtp);
  const sessions = new Map<string, Session[]>();
  let live = 0;
  let opening = 0;
  const openingFor = new Map<string, number>();
  const released = new Set<() => void>();

  function createTransport(mailbox: string, onTokenFailure: () => void): MailboxTransport {
    const transport: MailboxTransport = nodemailer.createTransport({
      pool: true,
      // One connection per session: the slot is the limit, the pool keeps the connection and its login.
      maxConnections: 1,
      maxMessages: 100,
      ...connection,
      disableFileAccess: true,
      disableUrlAccess: true,
      auth: {
        type: 'OAuth2',
        user: mailbox,
        provisionCallback: (_user, renew, callback) => {
          const requested = renew ? undefined : loginTokens.get(transport);
          loginTokens.delete(transport);
          (requested ?? tokens(mailbox, { forceRefresh: renew })).then(
            // Passing the expiry matters: without it nodemailer keeps a token forever.
            (token) => {
              signedIn.add(transport);
              callback(null, token.accessToken, token.renewAfter.getTime());
            },
            (error: Error) => {
              onTokenFailure();
              // nodemailer stamps its own code (EAUTH) on the error it is given; the send reports the token's
              // own error, so nodemailer gets a copy.
              callback(new Error(error.message));
            },
          );
        },
      },
    });
    return transport;
  }

  function wakeWaiters(): void {
    for (const wake of released) wake();
    released.clear();
  }

  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        released.delete(done);
        resolve();
      }
      released.add(done);
    });
  }

  async function close(session: Session): Promise<void> {
    const list = sessions.get(session.key) ?? [];
    const index = list.indexOf(session);
    if (index === -1) return;
    list.splice(index, 1);
    if (list.length === 0) sessions.delete(session.key);
    live -= 1;
    clearTimeout(session.idleTimer);
    clearInterval(session.renewTimer);
    session.transport?.close();
    // The connection is closed first: the slot must never be free while this session could still talk.
    await session.held.release().catch(() => undefined);
    wakeWaiters();
  }

  function lose(session: Session): void {
    session.lost = true;
    if (!session.busy) void close(session);
  }

  function open(key: string, held: HeldSlot, pooled: boolean): Session {
    const session: Session = {
      key,
      held,
      transport: undefined,
      busy: true,
      lost: false,
      lastUsed: Date.now(),
      renewTimer: setInterval(() => {
        // A slot that cannot be renewed (taken after expiry, or storage down) is given up: better one
        // session fewer than a 4th session at Exchange.
        held.renew().then(
          (kept) => kept || lose(session),
          () => lose(session),
        );
      }, SESSION_RENEW_MS),
    };
    session.renewTimer.unref();
    if (pooled) session.transport = createTransport(key, () => lose(session));
    const list = sessions.get(key) ?? [];
    list.push(session);
    sessions.set(key, list);
    live += 1;
    return session;
  }

  function closeLeastRecentlyUsedIdle(): boolean {
    let oldest: Session | undefined;
    for (const list of sessions.values())
      for (const session of list)
        if (!session.busy && (oldest === undefined || session.lastUsed < oldest.lastUsed)) oldest = session;
    if (oldest === undefined) return false;
    void close(oldest);
    return true;
  }

  async function acquire(mailbox: string, maxWaitMs: number, pooled: boolean): Promise<Session> {
    const key = mailbox.toLowerCase();
    const deadline = Date.now() + maxWaitMs;
    let pauseMs = FIRST_PAUSE_MS;
    for (;;) {
      const own = sessions.get(key) ?? [];
      const reusable = own.find(
        (session) => !session.busy && !session.lost && (session.transport !== undefined) === pooled,
      );
      if (reusable !== undefined) {
        reusable.busy = true;
        clearTimeout(reusable.idleTimer);
        return reusable;
      }
      // An idle session of the other kind holds a slot this request could use.
      const idle = own.find((session) => !session.busy);
      if (idle !== undefined) {
        await close(idle);
        continue;
      }
      // Slots being taken for this mailbox count as its own: concurrent first sends try one lease each.
      const openingHere = openingFor.get(key) ?? 0;
      if (own.length + openingHere < smtp.maxConnectionsPerMailbox) {
        if (live + opening >= MAX_LIVE_SESSIONS) closeLeastRecentlyUsedIdle();
        if (live + opening < MAX_LIVE_SESSIONS) {
          opening += 1;
          openingFor.set(key, openingHere + 1);
          const held = await slots.tryTake(key, smtp.maxConnectionsPerMailbox).finally(() => {
            opening -= 1;
            const left = (openingFor.get(key) ?? 1) - 1;
            if (left === 0) openingFor.delete(key);
            else openingFor.set(key, left);
          });
          if (held !== undefined) return open(key, held, pooled);
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw mailboxBusy(mailbox, smtp.maxConnectionsPerMailbox);
      await pause(Math.min(left, pauseMs));
      pauseMs = Math.min(pauseMs * 2, LONGEST_PAUSE_MS);
    }
  }

  function giveBack(session: Session): void {
    session.busy = false;
    session.lastUsed = Date.now();
    if (session.lost) {
      void close(session);
      return;
    }
    session.idleTimer = setTimeout(() => void close(session), IDLE_SESSION_MS);
    session.idleTimer.unref();
    wakeWaiters();
  }

  async function run<T>(
    mailbox: string,
    maxWaitMs: number,
    pooled: boolean,
    use: (session: Session) => Promise<T>,
  ) {
    const session = await acquire(mailbox, maxWaitMs, pooled);
    try {
      return await use(session);
    } finally {
      giveBack(session);
    }
  }

  return {
    get liveSessions() {
      return live;
    },
    withSession(mailbox, maxWaitMs, use) {
      return run(mailbox, maxWaitMs, true, (session) => use(session.transport as MailboxTransport));
    },
    withSlot(mailbox, maxWaitMs, use) {
      return run(mailbox, maxWaitMs, false, () => use());
    },
    async closeAll() {
      const all = [...sessions.values()].flat();
      await Promise.all(all.map((session) => close(session)));
    },
  };
}

function mailboxBusy(mailbox: string, slots: number): RelayError {
  return new RelayError('mailbox_busy', {
    message: `All ${slots} SMTP sessions of ${mailbox} are in use (counted over every instance of the relay); Exchange Online refuses one more with 432 4.3.2.`,
    details: { mailbox, sessions: slots },
  });
}
