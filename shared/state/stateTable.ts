import type { TableClient } from '@azure/data-tables';
import { withStorage } from '../storage/storageErrors.ts';
import { removeRowsWhere } from '../storage/tableRows.ts';

/**
 * The relay's own state that every instance must see and that is not a secret: pending sign-ins, mailbox
 * health, what alerts already announced, one-time migrations. One Azure Table (`RelayState`, in the storage
 * account the app already uses; Azurite locally), one partition per kind of row, so Key Vault holds only
 * credentials and token caches (it is a secret store with a transaction budget and soft delete, not a
 * database). Every change is conditional: an insert fails when the row exists, a replace or delete when
 * its ETag moved, so two instances never both win. Rows that can go stale carry `expiresAt`, and the
 * timer's housekeeping removes them.
 *
 * With RELAY_STATE_STORE=memory the same contract is kept in this process's memory (a relay that runs as
 * exactly one process, and the tests that run without Azurite).
 */
export type StateKind = 'consent' | 'mailbox' | 'credential' | 'migration';

export interface StateRow<Value> {
  key: string;
  value: Value;
  etag: string;
  /** ms since the epoch; absent for rows that live as long as the configuration names them. */
  expiresAt?: number;
}

export interface StateTable {
  read<Value>(kind: StateKind, key: string): Promise<StateRow<Value> | undefined>;
  list<Value>(kind: StateKind): Promise<StateRow<Value>[]>;
  /** The new row's ETag, or undefined when a row with this key exists already. */
  insert<Value>(kind: StateKind, key: string, value: Value, expiresAt?: number): Promise<string | undefined>;
  /** The new ETag, or undefined when the row changed since `etag` was read (or is gone). */
  replace<Value>(
    kind: StateKind,
    key: string,
    value: Value,
    etag: string,
    expiresAt?: number,
  ): Promise<string | undefined>;
  /** True when this call removed the row; false when it was gone or had changed since `etag`. */
  remove(kind: StateKind, key: string, etag?: string): Promise<boolean>;
  /** Removes every row whose expiresAt has passed; returns how many. */
  removeExpired(now: number): Promise<number>;
}

/**
 * Reads a row, lets `change` compute its next value from the current one (undefined: leave it), and writes
 * it conditionally, reading again when another instance wrote in between.
 */
export async function updateState<Value>(
  table: StateTable,
  kind: StateKind,
  key: string,
  change: (current: Value | undefined) => { value: Value; expiresAt?: number } | undefined,
): Promise<{ before: Value | undefined; after: Value | undefined }> {
  for (let round = 0; round < 10; round += 1) {
    const current = await table.read<Value>(kind, key);
    const next = change(current?.value);
    if (next === undefined) return { before: current?.value, after: current?.value };
    const written =
      current === undefined
        ? await table.insert(kind, key, next.value, next.expiresAt)
        : await table.replace(kind, key, next.value, current.etag, next.expiresAt);
    if (written !== undefined) return { before: current?.value, after: next.value };
  }
  throw new Error(`state row ${kind}/${key} kept changing while being updated`);
}

interface StateEntity {
  partitionKey: string;
  rowKey: string;
  value: string;
  // Milliseconds as 13-digit text: Table storage infers Int32 for bare JSON integers, and text compares in
  // time order for the expiry query.
  expiresAt?: string;
}

// Table keys may not hold '/', '\\', '#', '?' or control characters; an address may hold '#' and '?'.
const rowKeyOf = (key: string) => encodeURIComponent(key);
const keyOf = (rowKey: string) => decodeURIComponent(rowKey);
const expiryText = (expiresAt: number | undefined) =>
  expiresAt === undefined ? {} : { expiresAt: String(Math.round(expiresAt)).padStart(13, '0') };

export function createTableStateTable(table: TableClient, ready: () => Promise<void>): StateTable {
  const entity = (kind: StateKind, key: string, value: unknown, expiresAt?: number): StateEntity => ({
    partitionKey: kind,
    rowKey: rowKeyOf(key),
    value: JSON.stringify(value),
    ...expiryText(expiresAt),
  });
  const rowOf = <Value>(found: StateEntity & { etag?: string }): StateRow<Value> => ({
    key: keyOf(found.rowKey),
    value: JSON.parse(found.value) as Value,
    etag: found.etag ?? '*',
    ...(found.expiresAt === undefined ? {} : { expiresAt: Number(found.expiresAt) }),
  });

  return {
    async read<Value>(kind: StateKind, key: string) {
      await withStorage(ready);
      const found = await withStorage(() => table.getEntity<StateEntity>(kind, rowKeyOf(key)), [404]);
      return found === undefined ? undefined : rowOf<Value>(found);
    },
    async list<Value>(kind: StateKind) {
      await withStorage(ready);
      return withStorage(async () => {
        const rows: StateRow<Value>[] = [];
        const query = table.listEntities<StateEntity>({
          queryOptions: { filter: `PartitionKey eq '${kind}'` },
        });
        for await (const found of query) rows.push(rowOf<Value>(found));
        return rows;
      });
    },
    async insert(kind, key, value, expiresAt) {
      await withStorage(ready);
      const created = await withStorage(() => table.createEntity(entity(kind, key, value, expiresAt)), [409]);
      return created === undefined ? undefined : (created.etag ?? '*');
    },
    async replace(kind, key, value, etag, expiresAt) {
      await withStorage(ready);
      const updated = await withStorage(
        () => table.updateEntity(entity(kind, key, value, expiresAt), 'Replace', { etag }),
        [404, 412],
      );
      return updated === undefined ? undefined : (updated.etag ?? '*');
    },
    async remove(kind, key, etag) {
      await withStorage(ready);
      const removed = await withStorage(
        () => table.deleteEntity(kind, rowKeyOf(key), etag === undefined ? {} : { etag }),
        [404, 412],
      );
      return removed !== undefined;
    },
    async removeExpired(now) {
      await withStorage(ready);
      return removeRowsWhere(table, `expiresAt lt '${String(Math.round(now)).padStart(13, '0')}'`);
    },
  };
}

export function createMemoryStateTable(): StateTable {
  const rows = new Map<string, StateRow<unknown> & { kind: StateKind }>();
  let version = 0;
  const id = (kind: StateKind, key: string) => `${kind}\n${key}`;
  const nextEtag = () => {
    version += 1;
    return `W/"${version}"`;
  };
  // Values are copied in and out, as a real store would: a caller mutating its object changes nothing stored.
  const copy = <Value>(value: Value): Value => structuredClone(value);
  const stored = (kind: StateKind, key: string, value: unknown, expiresAt?: number) => {
    const etag = nextEtag();
    rows.set(id(kind, key), {
      kind,
      key,
      value: copy(value),
      etag,
      ...(expiresAt === undefined ? {} : { expiresAt }),
    });
    return etag;
  };
  const exposed = <Value>(row: StateRow<unknown>): StateRow<Value> => ({
    key: row.key,
    value: copy(row.value) as Value,
    etag: row.etag,
    ...(row.expiresAt === undefined ? {} : { expiresAt: row.expiresAt }),
  });

  return {
    async read<Value>(kind: StateKind, key: string) {
      const row = rows.get(id(kind, key));
      return row === undefined ? undefined : exposed<Value>(row);
    },
    async list<Value>(kind: StateKind) {
      return [...rows.values()].filter((row) => row.kind === kind).map((row) => exposed<Value>(row));
    },
    async insert(kind, key, value, expiresAt) {
      if (rows.has(id(kind, key))) return undefined;
      return stored(kind, key, value, expiresAt);
    },
    async replace(kind, key, value, etag, expiresAt) {
      if (rows.get(id(kind, key))?.etag !== etag) return undefined;
      return stored(kind, key, value, expiresAt);
    },
    async remove(kind, key, etag) {
      const row = rows.get(id(kind, key));
      if (row === undefined || (etag !== undefined && row.etag !== etag)) return false;
      rows.delete(id(kind, key));
      return true;
    },
    async removeExpired(now) {
      let removed = 0;
      for (const [rowId, row] of rows) {
        if (row.expiresAt !== undefined && row.expiresAt < now) {
          rows.delete(rowId);
          removed += 1;
        }
      }
      return removed;
    },
  };
}
