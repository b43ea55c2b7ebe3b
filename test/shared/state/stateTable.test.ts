import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import {
  createMemoryStateTable,
  createTableStateTable,
  type StateKind,
  type StateTable,
  updateState,
} from '../../../shared/state/stateTable.ts';
import { createRelayStorage } from '../../../shared/storage/relayStorage.ts';
import { type Azurite, startAzurite } from '../../support/azurite.ts';

/**
 * One contract for the relay's shared state, kept by the RelayState table in Azurite and by the in-memory
 * twin alike: conditional writes (insert refuses an existing row, replace and remove refuse a stale ETag),
 * no lost update under concurrency, kinds kept apart, any mailbox address as a key, expiry. The Table
 * store is shared by every test of the file, so each test uses keys of its own.
 */
let azurite: Azurite;

beforeAll(async () => {
  azurite = await startAzurite();
});

afterAll(async () => {
  await azurite?.stop();
});

const stores: { name: string; create: () => StateTable }[] = [
  { name: 'in memory', create: () => createMemoryStateTable() },
  {
    name: 'in the RelayState table (Azurite)',
    create: () => {
      const storage = createRelayStorage(
        loadConfig({ RELAY_STORAGE_CONNECTION: azurite.connectionString }).storage,
      );
      return createTableStateTable(storage.relayState, storage.ready);
    },
  },
];

/** A key no other test uses, shaped like the mailbox addresses the relay keys rows by. */
const uniqueKey = (label: string) => `${label}-${randomUUID()}@contoso.com`;

/**
 * Holds every read of the first round until `readers` reads have come back, so concurrent updates are
 * certain to have read the same version before any of them writes: the race the ETag has to settle.
 */
function readingTogether(table: StateTable, readers: number): StateTable {
  let arrived = 0;
  let release: () => void = () => undefined;
  const allRead = new Promise<void>((resolve) => {
    release = resolve;
  });
  return {
    ...table,
    async read<Value>(kind: StateKind, key: string) {
      const row = await table.read<Value>(kind, key);
      arrived += 1;
      if (arrived === readers) release();
      if (arrived <= readers) await allRead;
      return row;
    },
  };
}

describe.each(stores)('the state table $name', ({ create }) => {
  let table: StateTable;

  beforeAll(() => {
    table = create();
  });

  it('refuses to insert a key that exists and keeps the first value', async () => {
    const key = uniqueKey('insert');
    const etag = await table.insert('mailbox', key, { owner: 'first' });
    expect(etag).toEqual(expect.any(String));

    expect(await table.insert('mailbox', key, { owner: 'second' })).toBeUndefined();

    expect(await table.read('mailbox', key)).toMatchObject({ key, value: { owner: 'first' }, etag });
  });

  it('refuses a replace or remove with a stale ETag and changes nothing', async () => {
    const key = uniqueKey('etag');
    const first = (await table.insert('mailbox', key, { version: 1 })) as string;
    const second = await table.replace('mailbox', key, { version: 2 }, first);
    expect(second).toEqual(expect.any(String));
    expect(second).not.toBe(first);

    expect(await table.replace('mailbox', key, { version: 3 }, first)).toBeUndefined();
    expect(await table.remove('mailbox', key, first)).toBe(false);

    expect(await table.read('mailbox', key)).toMatchObject({ value: { version: 2 }, etag: second });
  });

  it('removes a row with its current ETag once, and a replace does not bring it back', async () => {
    const key = uniqueKey('remove');
    const etag = (await table.insert('consent', key, { nonce: 'n-1' })) as string;

    expect(await table.remove('consent', key, etag)).toBe(true);
    expect(await table.remove('consent', key, etag)).toBe(false);
    expect(await table.remove('consent', key)).toBe(false);
    expect(await table.replace('consent', key, { nonce: 'n-2' }, etag)).toBeUndefined();

    expect(await table.read('consent', key)).toBeUndefined();
  });

  it('lands both of two concurrent updates of a new row (no lost update)', async () => {
    const key = uniqueKey('race-insert');
    const racing = readingTogether(table, 2);
    let changes = 0;
    const append = (writer: string) =>
      updateState<string[]>(racing, 'mailbox', key, (current) => {
        changes += 1;
        return { value: [...(current ?? []), writer] };
      });

    await Promise.all([append('instance-a'), append('instance-b')]);

    // Both read "no row"; one insert lost and that writer read again and wrote on top.
    expect(changes).toBe(3);
    expect(((await table.read<string[]>('mailbox', key))?.value ?? []).sort()).toEqual([
      'instance-a',
      'instance-b',
    ]);
  });

  it('lands both of two concurrent updates of an existing row (no lost update)', async () => {
    const key = uniqueKey('race-replace');
    await table.insert('mailbox', key, { refreshes: 0, writers: [] as string[] });
    const racing = readingTogether(table, 2);
    let changes = 0;
    const refresh = (writer: string) =>
      updateState<{ refreshes: number; writers: string[] }>(racing, 'mailbox', key, (current) => {
        changes += 1;
        const previous = current ?? { refreshes: 0, writers: [] };
        return { value: { refreshes: previous.refreshes + 1, writers: [...previous.writers, writer] } };
      });

    const [a, b] = await Promise.all([refresh('instance-a'), refresh('instance-b')]);

    expect(changes).toBe(3);
    const stored = (await table.read<{ refreshes: number; writers: string[] }>('mailbox', key))?.value;
    expect(stored?.refreshes).toBe(2);
    expect(stored?.writers.sort()).toEqual(['instance-a', 'instance-b']);
    // Exactly one of them wrote over the other's value, and says so.
    expect([a.before?.refreshes, b.before?.refreshes].sort()).toEqual([0, 1]);
  });

  it('leaves a row alone when the change says there is nothing to write', async () => {
    const key = uniqueKey('unchanged');
    const etag = await table.insert('mailbox', key, { announced: 'healthy' });

    const result = await updateState<{ announced: string }>(table, 'mailbox', key, () => undefined);

    expect(result).toEqual({ before: { announced: 'healthy' }, after: { announced: 'healthy' } });
    expect((await table.read('mailbox', key))?.etag).toBe(etag);
  });

  it('keeps kinds apart: one key in two kinds is two rows, and a list returns only its kind', async () => {
    const key = uniqueKey('kinds');
    const otherConsent = uniqueKey('kinds-consent');
    await table.insert('mailbox', key, { from: 'mailbox' });
    await table.insert('consent', key, { from: 'consent' });
    await table.insert('consent', otherConsent, { from: 'consent' });

    const consents = await table.list<{ from: string }>('consent');
    const mailboxes = await table.list<{ from: string }>('mailbox');
    const migrations = await table.list<{ from: string }>('migration');

    expect(consents.every((row) => row.value.from === 'consent')).toBe(true);
    expect(consents.map((row) => row.key)).toEqual(expect.arrayContaining([key, otherConsent]));
    expect(mailboxes.every((row) => row.value.from !== 'consent')).toBe(true);
    expect(mailboxes.filter((row) => row.key === key)).toEqual([
      expect.objectContaining({ key, value: { from: 'mailbox' } }),
    ]);
    expect(migrations.filter((row) => row.key === key || row.key === otherConsent)).toEqual([]);
    expect((await table.read('consent', key))?.value).toEqual({ from: 'consent' });
    expect((await table.read('credential', key))?.value).toBeUndefined();
  });

  it('round-trips keys with characters Table storage forbids or escapes', async () => {
    const suffix = randomUUID().slice(0, 8);
    const keys = [
      `hash#and?query/${suffix}@contoso.com`,
      `percent%40literal-${suffix}@contoso.com`,
      `percent@literal-${suffix}@contoso.com`,
      `o'brien.${suffix}@contoso.com`,
      `back\\slash and space ${suffix}@contoso.com`,
      `zoë.ünïcødé-${suffix}@例え.jp`,
    ];
    for (const [index, key] of keys.entries()) await table.insert('mailbox', key, { index });

    for (const [index, key] of keys.entries())
      expect((await table.read('mailbox', key))?.value, key).toEqual({ index });
    // `%40` and `@` are two addresses, not one escaped twice.
    expect((await table.read('mailbox', keys[1] as string))?.value).not.toEqual(
      (await table.read('mailbox', keys[2] as string))?.value,
    );
    const listed = await table.list<{ index: number }>('mailbox');
    expect(listed.filter((row) => row.key.includes(suffix)).map((row) => row.key)).toEqual(
      expect.arrayContaining(keys),
    );
    expect(listed.filter((row) => row.key.includes(suffix))).toHaveLength(keys.length);
    for (const key of keys) {
      const row = await table.read('mailbox', key);
      expect(await table.replace('mailbox', key, { replaced: true }, row?.etag ?? ''), key).toEqual(
        expect.any(String),
      );
      expect((await table.read('mailbox', key))?.value, key).toEqual({ replaced: true });
      expect(await table.remove('mailbox', key), key).toBe(true);
      expect(await table.read('mailbox', key), key).toBeUndefined();
    }
  });

  it('removes only the rows past their expiry, of every kind, and keeps rows without one', async () => {
    const now = Date.now();
    const expiredConsent = uniqueKey('expired-consent');
    const expiredMailbox = uniqueKey('expired-mailbox');
    const unexpired = uniqueKey('unexpired');
    const permanent = uniqueKey('permanent');
    await table.insert('consent', expiredConsent, { nonce: 'late' }, now - 1_000);
    await table.insert('mailbox', expiredMailbox, { stale: true }, now - 60_000);
    await table.insert('consent', unexpired, { nonce: 'early' }, now + 600_000);
    await table.insert('mailbox', permanent, { connectedAt: new Date(now).toISOString() });

    expect(await table.removeExpired(now)).toBe(2);

    expect(await table.read('consent', expiredConsent)).toBeUndefined();
    expect(await table.read('mailbox', expiredMailbox)).toBeUndefined();
    expect(await table.read('consent', unexpired)).toMatchObject({
      value: { nonce: 'early' },
      expiresAt: now + 600_000,
    });
    const kept = await table.read('mailbox', permanent);
    expect(kept?.value).toEqual({ connectedAt: new Date(now).toISOString() });
    expect(kept?.expiresAt).toBeUndefined();
    expect(await table.removeExpired(now)).toBe(0);
  });

  it('hands out copies: changing a value given or read changes nothing stored', async () => {
    const key = uniqueKey('copies');
    const written = { mailbox: key, lastError: { code: 'smtp_auth_failed', at: '2026-12-01T00:00:00Z' } };
    const etag = (await table.insert('mailbox', key, written)) as string;
    written.lastError.code = 'changed by the caller after writing';

    const first = await table.read<typeof written>('mailbox', key);
    expect(first?.value.lastError.code).toBe('smtp_auth_failed');
    if (first !== undefined) first.value.lastError.code = 'changed by a reader';

    const second = await table.read<typeof written>('mailbox', key);
    expect(second?.value).toEqual({
      mailbox: key,
      lastError: { code: 'smtp_auth_failed', at: '2026-12-01T00:00:00Z' },
    });
    expect(second?.value).not.toBe(first?.value);

    const replacement = { mailbox: key, needsConsent: true };
    await table.replace('mailbox', key, replacement, etag);
    replacement.needsConsent = false;
    const listed = (await table.list<typeof replacement>('mailbox')).find((row) => row.key === key);
    expect(listed?.value).toEqual({ mailbox: key, needsConsent: true });
  });
});
