import { randomInt, randomUUID } from 'node:crypto';
import type { TableClient } from '@azure/data-tables';
import type { ContainerClient } from '@azure/storage-blob';
import { RelayError } from '../errors.ts';
import { withStorage } from '../storage/storageErrors.ts';
import {
  type HeldSlot,
  type ScheduleChange,
  type ScheduleStore,
  SESSION_LEASE_SECONDS,
  type SessionSlotStore,
} from './limitStores.ts';
import { emptySchedule, parseSchedule, type ScheduleState, serializeSchedule } from './sendSchedule.ts';

/**
 * The per-mailbox limits in the storage account every instance shares:
 * - the send schedule is one Table row per mailbox, changed only by an ETag-conditional write, so two
 *   instances reserving at once cannot both take the same slot (the loser reads again and retries);
 * - each SMTP session slot is a blob lease (`sessions/<mailbox>/<n>`), 15 seconds long and renewed while
 *   the connection is open: an instance that dies holding one frees it within 15 seconds.
 * A write this instance made last is remembered with its ETag, so a mailbox sending from one instance
 * costs one storage operation per reservation, not a read and a write; changes that arrive together are
 * written together.
 */
const SCHEDULE_ROW = 'schedule';
/** Conflicts resolve in a few rounds even with many writers; beyond this something is wrong. */
const MAX_CONFLICT_ROUNDS = 50;
const REMEMBERED_ROWS = 1_000;

interface ScheduleEntity {
  partitionKey: string;
  rowKey: string;
  starts: string;
  recipients: string;
  parkedUntil: string;
}

interface PendingChange {
  change: (state: ScheduleState) => ScheduleChange<unknown>;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
}

// Table keys may not hold '/', '\\', '#' or '?'; an address may hold the last two.
const partitionOf = (mailbox: string) => encodeURIComponent(mailbox.toLowerCase());

export function createTableScheduleStore(table: TableClient, ready: () => Promise<void>): ScheduleStore {
  let operations = 0;
  const remembered = new Map<string, { state: ScheduleState; etag: string }>();
  const pending = new Map<string, PendingChange[]>();
  const committing = new Set<string>();
  const count = <T>(operation: () => Promise<T>) => {
    operations += 1;
    return operation();
  };

  function remember(key: string, state: ScheduleState, etag: string): void {
    remembered.delete(key);
    remembered.set(key, { state, etag });
    if (remembered.size > REMEMBERED_ROWS) remembered.delete(remembered.keys().next().value as string);
  }

  async function readRow(key: string): Promise<{ state: ScheduleState; etag: string | undefined }> {
    const entity = await withStorage(
      () => count(() => table.getEntity<ScheduleEntity>(key, SCHEDULE_ROW)),
      [404],
    );
    if (entity === undefined) return { state: emptySchedule(), etag: undefined };
    return { state: parseSchedule(entity), etag: entity.etag };
  }

  /** Writes `state` if the row still has `etag` (or does not exist yet); the new ETag, or undefined. */
  async function write(key: string, state: ScheduleState, etag: string | undefined) {
    const entity: ScheduleEntity = { partitionKey: key, rowKey: SCHEDULE_ROW, ...serializeSchedule(state) };
    const written =
      etag === undefined
        ? await withStorage(() => count(() => table.createEntity(entity)), [409])
        : await withStorage(() => count(() => table.updateEntity(entity, 'Replace', { etag })), [412, 404]);
    return written === undefined ? undefined : (written.etag ?? undefined);
  }

  return {
    get operations() {
      return operations;
    },
    async read(mailbox) {
      await withStorage(ready);
      return (await readRow(partitionOf(mailbox))).state;
    },
    update<R>(mailbox: string, change: (state: ScheduleState) => ScheduleChange<R>): Promise<R> {
      const key = partitionOf(mailbox);
      return new Promise<R>((resolve, reject) => {
        const waiting = pending.get(key) ?? [];
        waiting.push({ change, resolve: resolve as (result: unknown) => void, reject });
        pending.set(key, waiting);
        if (!committing.has(key)) void commitPending(key);
      });
    },
  };

  /**
   * Group commit: the changes that arrive for a mailbox while a write is under way are applied together
   * and written in one conditional write, so a burst costs a few storage operations, not one conflict
   * round per message.
   */
  async function commitPending(key: string): Promise<void> {
    committing.add(key);
    try {
      for (;;) {
        const batch = pending.get(key) ?? [];
        pending.delete(key);
        if (batch.length === 0) return;
        try {
          await commitBatch(key, batch);
        } catch (error) {
          for (const change of batch) change.reject(error);
        }
      }
    } finally {
      committing.delete(key);
    }
  }

  async function commitBatch(key: string, batch: PendingChange[]): Promise<void> {
    await withStorage(ready);
    let current = remembered.get(key) ?? (await readRow(key));
    for (let round = 0; round < MAX_CONFLICT_ROUNDS; round += 1) {
      let state = current.state;
      let changed = false;
      const outcomes = batch.map((pendingChange) => {
        try {
          const { state: next, result } = pendingChange.change(state);
          if (next !== undefined) {
            state = next;
            changed = true;
          }
          return { ok: true as const, result };
        } catch (error) {
          return { ok: false as const, error };
        }
      });
      const etag = changed ? await write(key, state, current.etag) : 'unchanged';
      if (etag !== undefined) {
        if (changed) remember(key, state, etag);
        batch.forEach((pendingChange, index) => {
          const outcome = outcomes[index];
          if (outcome?.ok) pendingChange.resolve(outcome.result);
          else pendingChange.reject(outcome?.error);
        });
        return;
      }
      // Another instance wrote first: start again from what it wrote.
      remembered.delete(key);
      current = await readRow(key);
    }
    throw new RelayError('storage_unavailable', {
      message: `The relay could not update a send schedule: too many concurrent changes; nothing was sent.`,
    });
  }
}

export function createBlobSessionSlots(
  container: ContainerClient,
  ready: () => Promise<void>,
): SessionSlotStore {
  let operations = 0;
  const count = <T>(operation: () => Promise<T>) => {
    operations += 1;
    return operation();
  };
  const blobOf = (mailbox: string, slot: number) =>
    container.getBlockBlobClient(`sessions/${partitionOf(mailbox)}/${slot}`);

  /** Leases the slot's blob, creating the blob on first use; undefined when someone holds it. */
  async function lease(mailbox: string, slot: number): Promise<HeldSlot | undefined> {
    const blob = blobOf(mailbox, slot);
    const leaseClient = blob.getBlobLeaseClient(randomUUID());
    for (let round = 0; round < 2; round += 1) {
      try {
        operations += 1;
        await leaseClient.acquireLease(SESSION_LEASE_SECONDS);
        return {
          slot,
          async renew() {
            const renewed = await withStorage(() => count(() => leaseClient.renewLease()), [409, 412, 404]);
            return renewed !== undefined;
          },
          async release() {
            await withStorage(() => count(() => leaseClient.releaseLease()), [409, 412, 404]);
          },
        };
      } catch (error) {
        const status = (error as { statusCode?: number }).statusCode;
        if (status === 409) return undefined;
        if (status !== 404 || round > 0) return withStorage(() => Promise.reject(error));
        // The slot's blob does not exist yet: create it (another instance may be doing the same).
        await withStorage(
          () => count(() => blob.upload('', 0, { conditions: { ifNoneMatch: '*' } })),
          [409, 412],
        );
      }
    }
    return undefined;
  }

  return {
    get operations() {
      return operations;
    },
    async tryTake(mailbox, slots) {
      await withStorage(ready);
      // Start at a random slot, so instances looking at once do not all contend for slot 0.
      const first = randomInt(slots);
      for (let offset = 0; offset < slots; offset += 1) {
        const held = await lease(mailbox, (first + offset) % slots);
        if (held !== undefined) return held;
      }
      return undefined;
    },
  };
}
