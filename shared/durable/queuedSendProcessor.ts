import type { RelayConfig } from '../config.ts';
import { ensureRelayError, RelayError } from '../errors.ts';
import { type MessageLimits, parseSendRequest } from '../message.ts';
import { openRawMessage } from '../rawMime/rawMessage.ts';
import {
  type AuthorizedMessage,
  authorizeMessage,
  authorizeRawMessage,
  type Relay,
  SendDeferred,
} from '../relay.ts';
import { delayUntil, parseJob, type QueuedSendJob, type SendQueue } from './sendQueue.ts';
import type { SendError, SendStatus } from './sendStatus.ts';

/**
 * Sends one queued message, as the queue trigger delivers it. Exactly one processor sends a given attempt:
 * it first claims the message by a conditional (ETag) update of its status row to "sending". Outcomes:
 * - sent: status "sent" with the Message-ID and the server's reply;
 * - its start (reserved in the mailbox's shared schedule when it was accepted, or now) is later: put back on
 *   the queue, invisible until that start (not an attempt, not failed), so a backlog costs one delivery per
 *   message, not one per message per poll;
 * - transient failure: put back with exponential backoff as the next attempt, until `maxAttempts`;
 * - permanent failure or attempts used up: status "failed" with code and remedy, job on the poison queue.
 * Copies of a queue message (the queue delivers at least once) find the status ahead of them and stop.
 * Failures of the relay's own storage are thrown, so the Functions host retries and finally poisons them.
 */
export interface QueueDelivery {
  /** The host's dequeue count for this queue message (1 on first delivery). */
  dequeueCount: number;
  /** host.json `maxDequeueCount`: on this delivery a throw moves the message to the poison queue. */
  maxDequeueCount: number;
}

export type QueueOutcome =
  | 'sent'
  | 'failed'
  | 'retry_scheduled'
  | 'rate_delayed'
  | 'duplicate_dropped'
  | 'in_progress_elsewhere';

export interface QueuedSendProcessor {
  process(queueItem: unknown, delivery: QueueDelivery): Promise<QueueOutcome>;
}

export interface ProcessorDependencies {
  queue: SendQueue;
  relay: Relay;
  config: Pick<RelayConfig, 'callers' | 'limits' | 'queue' | 'smtp'>;
  now?: () => number;
  random?: () => number;
}

const MAX_BACKOFF_SECONDS = 3600;

/** base * 2^(attempt-1), at most an hour, with +-20% jitter so retries of a burst do not line up. */
export function backoffSeconds(baseSeconds: number, attempt: number, random: () => number): number {
  const plain = Math.min(MAX_BACKOFF_SECONDS, baseSeconds * 2 ** Math.max(0, attempt - 1));
  return Math.round(plain * (0.8 + 0.4 * random()));
}

function asSendError(error: RelayError): SendError {
  return {
    code: error.code,
    message: error.message,
    ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
  };
}

export function createQueuedSendProcessor(deps: ProcessorDependencies): QueuedSendProcessor {
  const { queue, relay, config } = deps;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const limits: MessageLimits = config.limits;
  // Long enough for the longest SMTP conversation (connect, greeting, every command at socketTimeout).
  const leaseMs = config.smtp.timeoutSeconds * 4 * 1000;
  const iso = (ms: number) => new Date(ms).toISOString();

  async function fail(
    job: QueuedSendJob,
    status: SendStatus,
    etag: string,
    error: RelayError,
  ): Promise<QueueOutcome> {
    const failed: SendStatus = {
      ...status,
      state: 'failed',
      updatedAt: iso(now()),
      lastError: asSendError(error),
    };
    delete failed.leaseUntil;
    delete failed.nextAttemptAt;
    await queue.poison(job);
    if ((await queue.statuses.replace(failed, etag)) !== undefined) await queue.settled(failed);
    return 'failed';
  }

  /**
   * The relay's own storage failed. On the host's last delivery, record why before the host moves the
   * message to the poison queue, so the status does not say "queued" forever.
   */
  async function recordLastDelivery(
    job: QueuedSendJob,
    error: RelayError,
    delivery: QueueDelivery,
  ): Promise<void> {
    if (delivery.dequeueCount < delivery.maxDequeueCount) return;
    const current = await queue.statuses.get(job.callerName, job.id).catch(() => undefined);
    if (current === undefined || current.status.state === 'sent' || current.status.state === 'failed') return;
    const failed: SendStatus = {
      ...current.status,
      state: 'failed',
      updatedAt: iso(now()),
      lastError: asSendError(error),
    };
    delete failed.leaseUntil;
    const written = await queue.statuses.replace(failed, current.etag).catch(() => undefined);
    if (written !== undefined) await queue.settled(failed);
  }

  return {
    async process(queueItem, delivery) {
      // Not ours (parse failure): nothing to record a status on; the host poisons it after its retries.
      const job = parseJob(queueItem);
      try {
        return await processJob(job);
      } catch (error) {
        const relayError = ensureRelayError(error);
        await recordLastDelivery(job, relayError, delivery);
        throw relayError;
      }
    },
  };

  async function waitInQueue(
    job: QueuedSendJob,
    status: SendStatus,
    claimEtag: string,
    until: number,
  ): Promise<QueueOutcome> {
    const waiting: SendStatus = {
      ...status,
      state: 'queued',
      updatedAt: iso(now()),
      nextAttemptAt: iso(until),
    };
    delete waiting.leaseUntil;
    await queue.statuses.replace(waiting, claimEtag);
    await queue.enqueue(job, delayUntil(until, now()));
    return 'rate_delayed';
  }

  async function processJob(job: QueuedSendJob): Promise<QueueOutcome> {
    const current = await queue.statuses.get(job.callerName, job.id);
    if (current === undefined) return 'duplicate_dropped';
    const { status } = current;
    if (status.state === 'sent' || status.state === 'failed') return 'duplicate_dropped';
    if (status.state === 'sending') {
      const leaseLeftMs = (status.leaseUntil ?? 0) - now();
      if (leaseLeftMs > 0) {
        // Another processor is sending it now. Check back after its lease: if it died mid-send, this copy
        // takes over then, so the message is not lost with it.
        await queue.enqueue(job, Math.ceil(leaseLeftMs / 1000) + 1);
        return 'in_progress_elsewhere';
      }
    } else if (job.attempt <= status.attempts) {
      return 'duplicate_dropped';
    }

    const attempt = status.attempts + 1;
    const claimed: SendStatus = {
      ...status,
      state: 'sending',
      attempts: attempt,
      leaseUntil: now() + leaseMs,
      updatedAt: iso(now()),
    };
    delete claimed.nextAttemptAt;
    const claimEtag = await queue.statuses.replace(claimed, current.etag);
    if (claimEtag === undefined) return 'duplicate_dropped';
    const claimedJob: QueuedSendJob = { ...job, attempt };

    const rule = config.callers.find((caller) => caller.name === job.callerName);
    let outcome: Awaited<ReturnType<Relay['send']>>;
    // A raw message's blob download, let go of however the attempt ends.
    let release: () => void = () => {};
    try {
      if (rule === undefined) {
        throw new RelayError('caller_removed', {
          message: `The caller "${job.callerName}" that queued this message is no longer configured.`,
        });
      }
      // Checked again at sending time: the caller's senders may have changed since the message was queued.
      const caller = { name: rule.name, senders: rule.senders };
      let authorized: AuthorizedMessage;
      if (job.format === 'rfc822' && job.bodyBlob !== undefined) {
        // Streamed from its blob; its header section is checked again as when it was accepted.
        const raw = await openRawMessage(await queue.readRaw(job.bodyBlob), limits, 'stored');
        release = () => raw.discard();
        authorized = authorizeRawMessage(caller, raw);
      } else {
        authorized = authorizeMessage(caller, parseSendRequest(await queue.loadBody(job), limits));
      }
      outcome = await relay.send(authorized, {
        messageId: status.messageId,
        queued: { reserved: job.start },
      });
    } catch (caught) {
      // Not an attempt: nothing was sent. Give the claim back; the queue holds the message until its start
      // (reserved in the mailbox's schedule) or, when every session was busy, for a moment.
      if (caught instanceof SendDeferred) {
        return waitInQueue({ ...job, start: caught.start }, status, claimEtag, caught.start.at);
      }
      const error = ensureRelayError(caught);
      if (error.code === 'storage_unavailable') throw error;
      if (error.code === 'mailbox_busy' || error.code === 'mailbox_rate_limited') {
        const { start: _stale, ...unscheduled } = job;
        return waitInQueue(unscheduled, status, claimEtag, now() + (error.retryAfterSeconds ?? 1) * 1000);
      }
      if (error.transient && attempt < config.queue.maxAttempts) {
        const delay = backoffSeconds(config.queue.retryBaseSeconds, attempt, random);
        const retrying: SendStatus = {
          ...claimed,
          state: 'queued',
          updatedAt: iso(now()),
          nextAttemptAt: iso(now() + delay * 1000),
          lastError: asSendError(error),
        };
        delete retrying.leaseUntil;
        // The next attempt's queue message goes out before this one is acknowledged: a crash in between
        // leaves two copies, and the second finds attempt already used and drops itself.
        const { start: _used, ...next } = job;
        await queue.enqueue({ ...next, attempt: attempt + 1 }, delay);
        await queue.statuses.replace(retrying, claimEtag);
        return 'retry_scheduled';
      }
      const reason =
        error.transient && attempt >= config.queue.maxAttempts
          ? new RelayError(error.code, {
              message: `Gave up after ${attempt} attempts. Last: ${error.message}`,
              remedy: error.remedy,
            })
          : error;
      return fail(claimedJob, claimed, claimEtag, reason);
    } finally {
      release();
    }

    const sent: SendStatus = {
      ...claimed,
      state: 'sent',
      updatedAt: iso(now()),
      messageId: outcome.messageId,
      smtpResponse: outcome.response,
      ...(outcome.relation === 'self' ? {} : { signedInAs: outcome.sender }),
    };
    delete sent.leaseUntil;
    delete sent.lastError;
    if ((await queue.statuses.replace(sent, claimEtag)) !== undefined) await queue.settled(sent);
    await queue.removeBody(job).catch(() => undefined);
    return 'sent';
  }
}
