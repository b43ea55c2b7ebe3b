import { setTimeout as sleep } from 'node:timers/promises';
import { RelayError } from '../errors.ts';

/**
 * Exchange Online accepts 30 messages per minute per mailbox and answers 4.3.2 when pushed beyond; the relay
 * keeps each sender under its configured rate itself. A sliding window of the last N send starts per mailbox
 * makes the guarantee exact: in any 60 seconds at most N messages start, with no burst at window edges.
 * This limiter is per process; README "Scaling out" says how the limit holds over several instances.
 */
export interface RateLimiter {
  /**
   * Takes a send slot for the mailbox, waiting at most `maxWaitMs` for one; otherwise throws 429
   * `mailbox_rate_limited` with the seconds until a slot frees up.
   */
  reserve(mailbox: string, maxWaitMs: number): Promise<void>;
  /** The mailbox's headroom now, for choosing within a pool: one look at its window. */
  headroom(mailbox: string): Headroom;
}

export interface Headroom {
  /** Milliseconds until the mailbox has a free slot (0 when it has one now). */
  waitMs: number;
  /** Slots it can take now without waiting. */
  freeSlots: number;
}

const WINDOW_MS = 60_000;

export function createRateLimiter(messagesPerMinute: number, now: () => number = Date.now): RateLimiter {
  // Per mailbox: start times of sends inside the window, oldest first, plus slots promised to waiters.
  const starts = new Map<string, number[]>();

  function windowOf(mailbox: string): number[] {
    const key = mailbox.toLowerCase();
    let window = starts.get(key);
    if (window === undefined) {
      window = [];
      starts.set(key, window);
    }
    const cutoff = now() - WINDOW_MS;
    let expired = 0;
    while (expired < window.length && (window[expired] ?? 0) <= cutoff) expired += 1;
    if (expired > 0) window.splice(0, expired);
    return window;
  }

  function waitFor(window: number[]): number {
    if (window.length < messagesPerMinute) return 0;
    // The slot frees when the send N places back leaves the window.
    const oldest = window[window.length - messagesPerMinute] ?? now();
    return Math.max(1, oldest + WINDOW_MS - now());
  }

  return {
    headroom(mailbox) {
      const window = windowOf(mailbox);
      return { waitMs: waitFor(window), freeSlots: Math.max(0, messagesPerMinute - window.length) };
    },
    async reserve(mailbox, maxWaitMs) {
      const deadline = now() + maxWaitMs;
      for (;;) {
        const window = windowOf(mailbox);
        const wait = waitFor(window);
        if (wait === 0) {
          window.push(now());
          return;
        }
        if (now() + wait > deadline) throw rateLimited(mailbox, wait, messagesPerMinute);
        await sleep(wait);
      }
    },
  };
}

function rateLimited(mailbox: string, waitMs: number, messagesPerMinute: number): RelayError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new RelayError('mailbox_rate_limited', {
    message: `${mailbox} has sent ${messagesPerMinute} messages in the last minute, the most the relay allows (Exchange Online throttles beyond 30 per minute).`,
    remedy: `Retry after ${seconds} seconds, send with "Prefer: respond-async" to let the relay queue it, or spread mail over several sender mailboxes.`,
    details: { mailbox, messagesPerMinute },
    retryAfterSeconds: seconds,
  });
}
