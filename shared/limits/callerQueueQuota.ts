import type { TableClient } from '@azure/data-tables';
import { RelayError } from '../errors.ts';
import { sha256 } from '../sha256.ts';
import { withStorage } from '../storage/storageErrors.ts';

/**
 * How much one caller may have waiting on the queue: messages and body bytes not yet sent or failed. One
 * caller's runaway backlog would otherwise fill the queue (and every mailbox's schedule for hours) for all
 * the others. Counted where every instance sees it (a Table row per caller, ETag-guarded), or in memory
 * with RELAY_STATE_STORE=memory. Taken when a message is accepted, given back when it is sent or fails;
 * an instance that dies between its last status write and the give-back leaves one message counted, which
 * only ever errs on the side of refusing.
 */
export interface CallerQueueQuota {
  /** Counts one more queued message of `bytes`, or throws 429 `queue_quota_exceeded`. */
  take(callerName: string, bytes: number): Promise<void>;
  give(callerName: string, bytes: number): Promise<void>;
}

export interface QueueQuotaPolicy {
  maxMessages: number;
  maxBytes: number;
}

interface Usage {
  messages: number;
  bytes: number;
}

function taken(usage: Usage, callerName: string, bytes: number, policy: QueueQuotaPolicy): Usage {
  const next = { messages: usage.messages + 1, bytes: usage.bytes + bytes };
  if (next.messages > policy.maxMessages || next.bytes > policy.maxBytes) {
    throw new RelayError('queue_quota_exceeded', {
      message: `The caller "${callerName}" already has ${usage.messages} messages (${usage.bytes} bytes) waiting on the queue; it may have at most ${policy.maxMessages} messages and ${policy.maxBytes} bytes.`,
      details: { queuedMessages: usage.messages, queuedBytes: usage.bytes, ...policy },
    });
  }
  return next;
}

const given = (usage: Usage, bytes: number): Usage => ({
  messages: Math.max(0, usage.messages - 1),
  bytes: Math.max(0, usage.bytes - bytes),
});

export function createMemoryQueueQuota(policy: QueueQuotaPolicy): CallerQueueQuota {
  const usage = new Map<string, Usage>();
  const of = (callerName: string) => usage.get(callerName) ?? { messages: 0, bytes: 0 };
  return {
    async take(callerName, bytes) {
      usage.set(callerName, taken(of(callerName), callerName, bytes, policy));
    },
    async give(callerName, bytes) {
      const next = given(of(callerName), bytes);
      if (next.messages === 0) usage.delete(callerName);
      else usage.set(callerName, next);
    },
  };
}

interface UsageEntity {
  partitionKey: string;
  rowKey: string;
  messages: number;
  bytes: number;
}

const ROW = 'queued';
const MAX_CONFLICT_ROUNDS = 50;

export function createTableQueueQuota(
  table: TableClient,
  ready: () => Promise<void>,
  policy: QueueQuotaPolicy,
): CallerQueueQuota {
  // Caller names are the operator's words; the row key must not depend on which characters they use.
  const partitionOf = (callerName: string) => `caller-${sha256(callerName)}`;

  // One change per caller at a time in this instance: concurrent accepts of one caller would otherwise
  // all conflict on its row; only other instances' changes remain to retry against.
  const inLine = new Map<string, Promise<void>>();
  function change(callerName: string, apply: (usage: Usage) => Usage): Promise<void> {
    const previous = inLine.get(callerName) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => write(callerName, apply));
    const settled = next.catch(() => undefined);
    inLine.set(callerName, settled);
    void settled.then(() => {
      if (inLine.get(callerName) === settled) inLine.delete(callerName);
    });
    return next;
  }

  async function write(callerName: string, apply: (usage: Usage) => Usage): Promise<void> {
    await withStorage(ready);
    const key = partitionOf(callerName);
    for (let round = 0; round < MAX_CONFLICT_ROUNDS; round += 1) {
      const row = await withStorage(() => table.getEntity<UsageEntity>(key, ROW), [404]);
      const next = apply({ messages: Number(row?.messages ?? 0), bytes: Number(row?.bytes ?? 0) });
      const entity: UsageEntity = { partitionKey: key, rowKey: ROW, ...next };
      const written =
        row === undefined
          ? await withStorage(() => table.createEntity(entity), [409])
          : await withStorage(() => table.updateEntity(entity, 'Replace', { etag: row.etag }), [412, 404]);
      if (written !== undefined) return;
      // Another instance wrote first: try again a moment later, at a random point so writers spread.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * (round + 1)));
    }
    throw new RelayError('storage_unavailable', {
      message: 'The relay could not update a queue quota: too many concurrent changes; nothing was queued.',
    });
  }

  return {
    take: (callerName, bytes) => change(callerName, (usage) => taken(usage, callerName, bytes, policy)),
    give: (callerName, bytes) => change(callerName, (usage) => given(usage, bytes)),
  };
}
