import type { PeekedMessageItem } from '@azure/storage-queue';
import { errorCodes } from '../errorCodes.ts';
import { RelayError } from '../errors.ts';
import type { CallerQueueQuota } from '../limits/callerQueueQuota.ts';
import { poisonQueueName, type RelayStorage } from '../storage/relayStorage.ts';
import { withStorage } from '../storage/storageErrors.ts';
import { decodeJob, type QueuedSendJob, type SendQueue } from './sendQueue.ts';
import type { SendError, SendState, SendStatus } from './sendStatus.ts';

/**
 * The queue part of the admin page: how many messages wait and failed, what lies on the poison queue, and
 * putting a poisoned message back once its cause was fixed.
 *
 * A retry is sent exactly once because of two locks and the processor's own claim:
 * - the poison message itself: it is received (invisible to everyone else for HOLD_SECONDS) and deleted
 *   with its pop receipt, so of two admins retrying at once only one holds it;
 * - the status row's ETag: the change back to "queued" is conditional, so a retry that raced another
 *   change (another admin, a processor) queues nothing;
 * - and whatever copies of the job exist, the processor sends an attempt only after claiming the status row
 *   (shared/durable/queuedSendProcessor.ts), so a leftover copy can never send a second time.
 */
export interface PoisonedSend {
  /** The message id a caller was given; for a poison message the relay did not write, its queue message id. */
  id: string;
  /** Empty when the poison message is not one the relay wrote. */
  callerName: string;
  sender?: string;
  /** Why it was poisoned, from its status row (code and message), when known. */
  reason?: { code: string; message: string; remedy?: string };
  /** When it was put on the poison queue. */
  poisonedAt?: string;
  /** Its status row's state: "failed" normally, "sent" for a leftover entry of a message that went out. */
  state?: SendState;
  /**
   * Whether retryPoisoned can put it back: not when it is not a relay message, its status is gone, it was
   * sent, or it is being sent. A retry still refuses one whose body blob is gone (checked only then).
   */
  retryable: boolean;
}

export interface QueueOverview {
  /** status rows in state queued or sending: accepted and not yet sent or failed */
  queued: number;
  /** status rows in state failed */
  failed: number;
  /** The first POISON_LISTED messages of the poison queue, oldest first. */
  poisoned: PoisonedSend[];
  /** poison queue's approximate count (may exceed poisoned.length when many) */
  poisonCount: number;
}

export interface QueueAdmin {
  overview(): Promise<QueueOverview>;
  /**
   * Puts a poisoned message back on the send queue after its cause was fixed; its status becomes queued
   * again. Throws RelayError send_not_found (404) when no poisoned message has this id, or the one that has
   * it cannot be retried (the message says why), and queue_quota_exceeded (429) while its caller has as
   * many messages waiting as it may.
   */
  retryPoisoned(id: string): Promise<{ id: string; state: 'queued' }>;
}

export interface QueueAdminDependencies {
  storage: RelayStorage;
  queue: SendQueue;
  /** The caller's queue quota: a failed message gave its share back, a retried one takes it again. */
  quota: CallerQueueQuota;
  now?: () => number;
}

/** Queue Storage peeks and receives at most 32 messages per call. */
const POISON_LISTED = 32;
/** How long a retry holds a poison message it received; after a crash the message shows again then. */
const HOLD_SECONDS = 30;
/** A retry looks this far into the poison queue for its message. */
const MAX_SCANNED = 5_000;
const RELAY_ID = /^[0-9a-f-]{36}$/i;
// One scan for the counts: a filter on a non-key property, with only the state column sent back.
const UNSETTLED_FILTER = "state ne 'sent'";

interface PoisonMessage {
  messageId: string;
  insertedOn: Date;
  messageText: string;
  /** Undefined when it is not a message the relay wrote. */
  job: QueuedSendJob | undefined;
}

interface HeldMessage extends PoisonMessage {
  popReceipt: string;
}

const toPoisonMessage = (item: PeekedMessageItem): PoisonMessage => ({
  messageId: item.messageId,
  insertedOn: item.insertedOn,
  messageText: item.messageText,
  job: decodeJob(item.messageText),
});

const matches = (message: PoisonMessage, id: string) =>
  message.job === undefined ? message.messageId === id : message.job.id === id;

/** Why a poisoned message with this status cannot go back on the queue now; undefined when it can. */
function refusalOf(status: SendStatus, now: number): string | undefined {
  if (status.state === 'sent') {
    return `It was already sent (${status.updatedAt}); the poison queue holds a leftover copy, which can be deleted.`;
  }
  // Another copy of it is being sent this moment: queueing it now could send it twice.
  if (status.state === 'sending' && (status.leaseUntil ?? 0) > now) {
    return 'It is being sent right now; reload the page in a minute to see how that went.';
  }
  return undefined;
}

function noPoisoned(id: string): RelayError {
  return new RelayError('send_not_found', {
    message: `No message ${id.slice(0, 100)} is on the poison queue ${poisonQueueName}.`,
    remedy: 'Reload the admin page: it may have been retried already, by you or another administrator.',
  });
}

function notRetryable(id: string, why: string, remedy?: string): RelayError {
  return new RelayError('send_not_found', {
    message: `The poisoned message ${id} cannot be retried. ${why}`,
    remedy: remedy ?? `Inspect it in the poison queue ${poisonQueueName} (Azure Portal or Storage Explorer).`,
  });
}

const notRelayMessage = (message: PoisonMessage): SendError => ({
  code: 'queue_message_invalid',
  // Its length and nothing of its content: it may hold anything, a message body included.
  message: `${errorCodes.queue_message_invalid.title} It holds ${message.messageText.length} characters.`,
  remedy: `Inspect it in the poison queue ${poisonQueueName} (Azure Portal or Storage Explorer) and delete it there.`,
});

const statusGone = (id: string): SendError => ({
  code: 'send_not_found',
  message: `The status of ${id} is gone, so its caller could not follow a retry; it cannot be retried.`,
  remedy: `Ask its caller to send it again, and delete it from the poison queue ${poisonQueueName}.`,
});

export function createQueueAdmin(deps: QueueAdminDependencies): QueueAdmin {
  const { storage, queue, quota } = deps;
  const now = deps.now ?? Date.now;
  const statuses = queue.statuses;

  async function countUnsettled(): Promise<{ queued: number; failed: number }> {
    const counts = { queued: 0, failed: 0 };
    await withStorage(async () => {
      const rows = storage.statuses.listEntities<{ state: SendState }>({
        queryOptions: { filter: UNSETTLED_FILTER, select: ['state'] },
      });
      for await (const row of rows) {
        if (row.state === 'failed') counts.failed += 1;
        else if (row.state === 'queued' || row.state === 'sending') counts.queued += 1;
      }
    });
    return counts;
  }

  async function describe(message: PoisonMessage): Promise<PoisonedSend> {
    const poisonedAt = message.insertedOn.toISOString();
    const { job } = message;
    if (job === undefined) {
      return {
        id: message.messageId,
        callerName: '',
        reason: notRelayMessage(message),
        poisonedAt,
        retryable: false,
      };
    }
    const found = await statuses.get(job.callerName, job.id);
    if (found === undefined) {
      return {
        id: job.id,
        callerName: job.callerName,
        reason: statusGone(job.id),
        poisonedAt,
        retryable: false,
      };
    }
    const { status } = found;
    return {
      id: job.id,
      callerName: job.callerName,
      sender: status.sender,
      ...(status.lastError === undefined ? {} : { reason: status.lastError }),
      poisonedAt,
      state: status.state,
      retryable: refusalOf(status, now()) === undefined,
    };
  }

  /**
   * Receives poison messages until the one with `id` is found, keeping each one received invisible so the
   * next receive returns the ones after it. `release` shows all of them again except the one consumed.
   */
  async function holdPoisoned(id: string) {
    const passed: HeldMessage[] = [];
    let target: HeldMessage | undefined;
    while (target === undefined && passed.length < MAX_SCANNED) {
      const { receivedMessageItems } = await withStorage(() =>
        storage.poisonQueue.receiveMessages({
          numberOfMessages: POISON_LISTED,
          visibilityTimeout: HOLD_SECONDS,
        }),
      );
      if (receivedMessageItems.length === 0) break;
      for (const item of receivedMessageItems) {
        const held: HeldMessage = { ...toPoisonMessage(item), popReceipt: item.popReceipt };
        if (target === undefined && matches(held, id)) target = held;
        else passed.push(held);
      }
    }
    let consumed = false;
    return {
      target,
      async consume(message: HeldMessage) {
        consumed = true;
        // Once the job is back on the send queue the retry has happened: a failure to delete only leaves an
        // entry that shows again, and retrying that queues a copy the processor drops.
        await withStorage(
          () => storage.poisonQueue.deleteMessage(message.messageId, message.popReceipt),
          [404],
        ).catch(() => undefined);
      },
      async release() {
        const shown = consumed || target === undefined ? passed : [...passed, target];
        // A message whose hold could not be lifted shows again by itself after HOLD_SECONDS.
        await Promise.all(
          shown.map((message) =>
            storage.poisonQueue
              .updateMessage(message.messageId, message.popReceipt, undefined, 0)
              .catch(() => undefined),
          ),
        );
      },
    };
  }

  /** Puts `job` back on the send queue; `consume` then deletes its poison message. */
  async function requeue(job: QueuedSendJob, consume: () => Promise<void>): Promise<void> {
    const current = await statuses.get(job.callerName, job.id);
    if (current === undefined) throw notRetryable(job.id, statusGone(job.id).message);
    const refusal = refusalOf(current.status, now());
    if (refusal !== undefined) throw notRetryable(job.id, refusal);
    if (job.bodyBlob !== undefined) {
      const blobName = job.bodyBlob;
      const bodyKept = await withStorage(() => storage.bodies.getBlockBlobClient(blobName).exists());
      if (!bodyKept) {
        throw notRetryable(
          job.id,
          'Its body is gone from the storage account.',
          `Ask its caller to send it again, and delete it from the poison queue ${poisonQueueName}.`,
        );
      }
    }

    const { status } = current;
    // A message that failed for good gave its share of the caller's quota back (SendQueue.settled); one
    // the host poisoned before its status could say so still holds it.
    const settled = status.state === 'failed';
    const requeued: SendStatus = {
      ...status,
      state: 'queued',
      updatedAt: new Date(now()).toISOString(),
      // Its cause was fixed: a fresh round of RELAY_QUEUE_MAX_ATTEMPTS. The last error stays in the status
      // until it is sent, so its caller sees why it was late.
      ...(settled ? { attempts: 0 } : {}),
    };
    delete requeued.leaseUntil;
    delete requeued.nextAttemptAt;
    // Its reserved start is long past: without one the processor reserves the next start when it sends.
    const { start: _stale, ...unscheduled } = job;
    const retried: QueuedSendJob = { ...unscheduled, attempt: requeued.attempts + 1 };

    if (settled) await quota.take(status.callerName, status.queuedBytes ?? 0);
    const giveBack = async () => {
      if (settled) await quota.give(status.callerName, status.queuedBytes ?? 0).catch(() => undefined);
    };
    let requeuedEtag: string | undefined;
    try {
      requeuedEtag = await statuses.replace(requeued, current.etag);
    } catch (error) {
      await giveBack();
      throw error;
    }
    if (requeuedEtag === undefined) {
      await giveBack();
      throw notRetryable(
        job.id,
        'Its status changed while it was being retried (another administrator, or a copy of it being sent).',
        'Reload the admin page to see where it is now.',
      );
    }
    try {
      await queue.enqueue(retried, 0);
    } catch (error) {
      // Without its queue message the status would say "queued" forever: put it back as it was.
      await statuses.replace(status, requeuedEtag).catch(() => undefined);
      await giveBack();
      throw error;
    }
    await consume();
  }

  // One retry at a time here: two scans at once would each hide from the other the messages it passed.
  let inLine: Promise<unknown> = Promise.resolve();
  function oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const next = inLine.catch(() => undefined).then(work);
    inLine = next.catch(() => undefined);
    return next;
  }

  return {
    async overview() {
      await withStorage(() => storage.ready());
      const [counts, peeked, properties] = await Promise.all([
        countUnsettled(),
        withStorage(() => storage.poisonQueue.peekMessages({ numberOfMessages: POISON_LISTED })),
        withStorage(() => storage.poisonQueue.getProperties()),
      ]);
      const poisoned = await Promise.all(
        peeked.peekedMessageItems.map((item) => describe(toPoisonMessage(item))),
      );
      return {
        ...counts,
        poisoned,
        poisonCount: Math.max(properties.approximateMessagesCount ?? 0, poisoned.length),
      };
    },

    retryPoisoned(id) {
      if (!RELAY_ID.test(id)) return Promise.reject(noPoisoned(id));
      return oneAtATime(async () => {
        await withStorage(() => storage.ready());
        const hold = await holdPoisoned(id);
        try {
          const { target } = hold;
          if (target === undefined) throw noPoisoned(id);
          if (target.job === undefined) throw notRetryable(id, notRelayMessage(target).message);
          await requeue(target.job, () => hold.consume(target));
          return { id, state: 'queued' as const };
        } finally {
          await hold.release();
        }
      });
    },
  };
}
