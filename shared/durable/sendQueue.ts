import { randomUUID } from 'node:crypto';
import { Transform } from 'node:stream';
import { RelayError } from '../errors.ts';
import type { CallerQueueQuota } from '../limits/callerQueueQuota.ts';
import { domainOf } from '../mailAddress.ts';
import type { RawMessage } from '../rawMime/rawMessage.ts';
import type { ReservedStart } from '../relay.ts';
import type { RelayStorage } from '../storage/relayStorage.ts';
import { withStorage } from '../storage/storageErrors.ts';
import { createSendStatusStore, type SendStatus, type SendStatusStore } from './sendStatus.ts';

/**
 * Accepting a message for queued sending: its status row first (so the processor always finds it), then
 * the queue message. A queue message holds at most 64 KiB and the Functions host reads it base64-encoded,
 * which leaves 48 KiB of JSON; a larger body goes to a blob and the queue message names the blob.
 */
export interface QueuedSendJob {
  v: 1;
  id: string;
  callerName: string;
  /** The SMTP attempt this queue message is for (1 for the first). */
  attempt: number;
  /** The request JSON exactly as accepted (validated again before sending). */
  body?: unknown;
  /** The blob holding the body: the request JSON, or with `format: 'rfc822'` the raw MIME message. */
  bodyBlob?: string;
  /** A raw MIME message (POST /api/send with message/rfc822), always in `bodyBlob`; JSON when absent. */
  format?: 'rfc822';
  /** The start reserved for it in its mailbox's shared schedule; the queue holds it invisible until then. */
  start?: ReservedStart;
}

export interface AcceptedSend {
  id: string;
  messageId: string;
}

export interface SendQueue {
  statuses: SendStatusStore;
  /** Gives the caller's queue quota back once its message is sent or failed for good. */
  settled(status: SendStatus): Promise<void>;
  /** Queues a message, invisible until `start` when it has one. */
  accept(callerName: string, sender: string, body: unknown, start?: ReservedStart): Promise<AcceptedSend>;
  /** Puts a job (back) on the send queue, invisible for `delaySeconds`. */
  enqueue(job: QueuedSendJob, delaySeconds: number): Promise<void>;
  /** Dead-letters a job on the poison queue, where an operator can inspect or replay it. */
  poison(job: QueuedSendJob): Promise<void>;
  loadBody(job: QueuedSendJob): Promise<unknown>;
  removeBody(job: QueuedSendJob): Promise<void>;
  /**
   * Writes a raw message's stored form to a blob of the bodies container as it streams from the request;
   * a message over the limit (or a request cut off) fails with its own error and leaves no blob.
   */
  spillRaw(message: RawMessage): Promise<SpilledMessage>;
  /** Queues a spilled raw message (its blob becomes the job's), invisible until `start` when it has one. */
  acceptRaw(
    callerName: string,
    sender: string,
    spilled: SpilledMessage,
    start?: ReservedStart,
  ): Promise<AcceptedSend>;
  /** A spilled raw message's bytes, streamed from its blob. */
  readRaw(blobName: string): Promise<AsyncIterable<Uint8Array>>;
  removeSpilled(blobName: string): Promise<void>;
}

/** A raw message written to the bodies container. */
export interface SpilledMessage {
  blobName: string;
  bytes: number;
  messageId: string;
}

const SPILL_BLOCK_BYTES = 1024 * 1024;

/** JSON bytes that still fit a queue message after base64 (64 KiB * 3/4 = 48 KiB), with room to spare. */
export const INLINE_BODY_LIMIT_BYTES = 45_000;

export function encodeJob(job: QueuedSendJob): string {
  return Buffer.from(JSON.stringify(job), 'utf8').toString('base64');
}

/** encodeJob's inverse, for a queue message read directly (the poison queue); undefined for anything else. */
export function decodeJob(messageText: string): QueuedSendJob | undefined {
  try {
    return parseJob(Buffer.from(messageText, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The queue trigger hands over the decoded message: an object when it was JSON, else text. */
export function parseJob(queueItem: unknown): QueuedSendJob {
  let value = queueItem;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      value = undefined;
    }
  }
  const job = value as Partial<QueuedSendJob> | undefined;
  if (
    job === undefined ||
    job === null ||
    job.v !== 1 ||
    typeof job.id !== 'string' ||
    typeof job.callerName !== 'string' ||
    typeof job.attempt !== 'number' ||
    (job.body === undefined && typeof job.bodyBlob !== 'string') ||
    (job.format !== undefined && (job.format !== 'rfc822' || typeof job.bodyBlob !== 'string')) ||
    (job.start !== undefined && (typeof job.start?.mailbox !== 'string' || typeof job.start?.at !== 'number'))
  ) {
    throw new RelayError('queue_message_invalid');
  }
  return job as QueuedSendJob;
}

/**
 * The visibility delay for a start: a queue message becomes visible to the whole second, and the host polls
 * an idle queue only every few seconds (host.json maxPollingInterval), so it is made visible a second
 * early and the invocation waits the rest (shared/relay.ts).
 */
export function delayUntil(at: number, now: number): number {
  return Math.max(0, Math.floor((at - now) / 1000) - 1);
}

export function messageIdFor(id: string, sender: string): string {
  return `<${id}@${domainOf(sender)}>`;
}

export function createSendQueue(
  storage: RelayStorage,
  quota: CallerQueueQuota,
  now: () => Date = () => new Date(),
): SendQueue {
  const statuses = createSendStatusStore(storage.statuses);

  async function enqueue(job: QueuedSendJob, delaySeconds: number): Promise<void> {
    await withStorage(() =>
      storage.sendQueue.sendMessage(encodeJob(job), {
        visibilityTimeout: Math.max(0, Math.round(delaySeconds)),
        // Queue messages otherwise expire after 7 days; a queued message must never vanish silently.
        messageTimeToLive: -1,
      }),
    );
  }

  /** Its status row first (so the processor always finds it), then its queue message. */
  async function record(
    job: QueuedSendJob,
    sender: string,
    messageId: string,
    queuedBytes: number,
  ): Promise<AcceptedSend> {
    const { id, callerName, start } = job;
    const at = now().toISOString();
    const status: SendStatus = {
      id,
      callerName,
      sender,
      state: 'queued',
      attempts: 0,
      createdAt: at,
      updatedAt: at,
      messageId,
      queuedBytes,
      ...(job.bodyBlob === undefined ? {} : { bodyBlob: job.bodyBlob }),
      ...(start === undefined || start.at <= now().getTime()
        ? {}
        : { nextAttemptAt: new Date(start.at).toISOString() }),
    };
    try {
      await statuses.create(status);
    } catch (error) {
      await quota.give(callerName, queuedBytes).catch(() => undefined);
      throw error;
    }
    try {
      await enqueue(job, start === undefined ? 0 : delayUntil(start.at, now().getTime()));
    } catch (error) {
      // Without its queue message the status would say "queued" forever: take it back, answer 503.
      await statuses.remove(callerName, id).catch(() => undefined);
      await quota.give(callerName, queuedBytes).catch(() => undefined);
      throw error;
    }
    return { id, messageId: status.messageId };
  }

  const removeBlob = async (blobName: string) => {
    await withStorage(() => storage.bodies.getBlockBlobClient(blobName).delete(), [404]);
  };

  return {
    statuses,
    enqueue,

    async accept(callerName, sender, body, start) {
      await withStorage(() => storage.ready());
      const id = randomUUID();
      const job: QueuedSendJob = {
        v: 1,
        id,
        callerName,
        attempt: 1,
        body,
        ...(start === undefined ? {} : { start }),
      };
      // Serialized once: a body may hold megabytes of base64. The job's JSON is the body's in place of null.
      const bodyJson = Buffer.from(JSON.stringify(body), 'utf8');
      const queuedBytes = bodyJson.length;
      const jobBytes =
        Buffer.byteLength(JSON.stringify({ ...job, body: null })) - 'null'.length + queuedBytes;
      // Counted before anything is stored, so a caller over its quota leaves nothing behind.
      await quota.take(callerName, queuedBytes);
      if (jobBytes > INLINE_BODY_LIMIT_BYTES) {
        const blobName = `${id}.json`;
        job.bodyBlob = blobName;
        delete job.body;
        await withStorage(() =>
          storage.bodies.getBlockBlobClient(blobName).upload(bodyJson, bodyJson.length, {
            blobHTTPHeaders: { blobContentType: 'application/json' },
          }),
        ).catch(async (error: unknown) => {
          await quota.give(callerName, queuedBytes).catch(() => undefined);
          throw error;
        });
      }
      return record(job, sender, messageIdFor(id, sender), queuedBytes);
    },

    async settled(status) {
      await quota.give(status.callerName, status.queuedBytes ?? 0).catch(() => undefined);
    },

    async poison(job) {
      await withStorage(() => storage.poisonQueue.sendMessage(encodeJob(job), { messageTimeToLive: -1 }));
    },

    async loadBody(job) {
      const blobName = job.bodyBlob;
      if (blobName === undefined) return job.body;
      return withStorage(async () => {
        const content = await storage.bodies.getBlockBlobClient(blobName).downloadToBuffer();
        return JSON.parse(content.toString('utf8')) as unknown;
      });
    },

    async removeBody(job) {
      if (job.bodyBlob !== undefined) await removeBlob(job.bodyBlob);
    },

    async spillRaw(message) {
      await withStorage(() => storage.ready());
      const blobName = `${randomUUID()}.eml`;
      let bytes = 0;
      const counting = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      });
      const source = message.storedForm();
      source.on('error', (error) => counting.destroy(error));
      source.pipe(counting);
      try {
        // Blocks are committed only when the stream ended: a message that fails midway leaves no blob. Two
        // 1 MiB blocks in flight at most, so many spills at once stay small in memory.
        await withStorage(() =>
          storage.bodies.getBlockBlobClient(blobName).uploadStream(counting, SPILL_BLOCK_BYTES, 2, {
            blobHTTPHeaders: { blobContentType: 'message/rfc822' },
          }),
        );
      } catch (error) {
        await removeBlob(blobName).catch(() => undefined);
        throw message.failure() ?? error;
      }
      return { blobName, bytes, messageId: message.messageId };
    },

    async acceptRaw(callerName, sender, spilled, start) {
      await quota.take(callerName, spilled.bytes);
      const job: QueuedSendJob = {
        v: 1,
        id: randomUUID(),
        callerName,
        attempt: 1,
        bodyBlob: spilled.blobName,
        format: 'rfc822',
        ...(start === undefined ? {} : { start }),
      };
      return record(job, sender, spilled.messageId, spilled.bytes);
    },

    async readRaw(blobName) {
      const download = await withStorage(() => storage.bodies.getBlockBlobClient(blobName).download());
      const body = download.readableStreamBody;
      if (body === undefined) throw new RelayError('storage_unavailable');
      return body as AsyncIterable<Uint8Array>;
    },

    removeSpilled: removeBlob,
  };
}
