import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import {
  createSendStatusStore,
  type SendState,
  type SendStatusStore,
} from '../../../shared/durable/sendStatus.ts';
import { RelayError } from '../../../shared/errors.ts';
import {
  createIdempotencyStore,
  IDEMPOTENCY_WINDOW_MS,
  type IdempotencyStore,
} from '../../../shared/idempotency/idempotencyStore.ts';
import { createPendingConsents, pendingConsentKey } from '../../../shared/oauth/pendingConsents.ts';
import {
  createHousekeeping,
  type HousekeepingTables,
  settledStatusRetentionMs,
} from '../../../shared/state/housekeeping.ts';
import { createTableStateTable, type StateTable } from '../../../shared/state/stateTable.ts';
import { createRelayStorage, type RelayStorage } from '../../../shared/storage/relayStorage.ts';
import { type Azurite, startAzurite } from '../../support/azurite.ts';

/**
 * The timer's housekeeping against Azurite: what it removes (idempotency keys past their 24-hour window,
 * status rows of messages settled more than a week ago, sign-ins nobody finished) and what it must keep
 * (younger keys, whose repeats still replay; queued messages of any age; rows without an expiry). Rows are
 * made old by the stores' own injected clocks, as a relay running a week ago would have written them.
 */
let azurite: Azurite;
let storage: RelayStorage;
let state: StateTable;
let statuses: SendStatusStore;
const hour = 60 * 60 * 1000;
const day = 24 * hour;

beforeAll(async () => {
  azurite = await startAzurite();
  storage = createRelayStorage(loadConfig({ RELAY_STORAGE_CONNECTION: azurite.connectionString }).storage);
  await storage.ready();
  state = createTableStateTable(storage.relayState, storage.ready);
  statuses = createSendStatusStore(storage.statuses);
});

afterAll(async () => {
  await azurite?.stop();
});

const tables = (): HousekeepingTables => ({
  idempotencyKeys: storage.idempotencyKeys,
  statuses: storage.statuses,
  ready: storage.ready,
});

const storedResponse = (messageId: string) => ({
  status: 200,
  body: { messageId },
  headers: { 'content-type': 'application/json' },
});

/** A request with an Idempotency-Key answered by a relay whose clock read `at`. */
async function answeredAt(at: number, key: string): Promise<void> {
  const store = createIdempotencyStore(storage.idempotencyKeys, storage.ready, () => at);
  const begun = await store.begin('alerts-app', key, `fingerprint-${key}`);
  if (begun.kind !== 'claimed') throw new Error(`the key ${key} was taken already`);
  await begun.complete(storedResponse(`<${key}@relay>`));
}

async function rowCount(table: RelayStorage['statuses']): Promise<number> {
  let count = 0;
  for await (const _row of table.listEntities()) count += 1;
  return count;
}

async function queuedMessage(state: SendState, updatedAt: number): Promise<string> {
  const id = randomUUID();
  await statuses.create({
    id,
    callerName: 'alerts-app',
    sender: 'alerts@contoso.com',
    state,
    attempts: state === 'queued' ? 0 : 1,
    createdAt: new Date(updatedAt - hour).toISOString(),
    updatedAt: new Date(updatedAt).toISOString(),
    messageId: `<${id}@relay>`,
  });
  return id;
}

describe('housekeeping', () => {
  it('removes idempotency keys older than 24 hours and keeps the younger ones replaying', async () => {
    const now = Date.now();
    await answeredAt(now - IDEMPOTENCY_WINDOW_MS - hour, 'invoice-2026-001');
    await answeredAt(now - 2 * day, 'invoice-2026-002');
    await answeredAt(now - IDEMPOTENCY_WINDOW_MS + hour, 'invoice-2026-003');
    await answeredAt(now - 5 * 60 * 1000, 'invoice-2026-004');
    expect(await rowCount(storage.idempotencyKeys)).toBe(4);

    const report = await createHousekeeping({ state, tables, now: () => now }).run();

    expect(report.problems).toEqual([]);
    expect(report.idempotencyKeysRemoved).toBe(2);
    expect(await rowCount(storage.idempotencyKeys)).toBe(2);
    // A caller repeating a young request still gets the first answer back, and nothing is sent again.
    const current: IdempotencyStore = createIdempotencyStore(
      storage.idempotencyKeys,
      storage.ready,
      () => now,
    );
    for (const key of ['invoice-2026-003', 'invoice-2026-004']) {
      const repeat = await current.begin('alerts-app', key, `fingerprint-${key}`);
      expect(repeat, key).toEqual({ kind: 'replay', response: storedResponse(`<${key}@relay>`) });
    }
  });

  it('removes status rows settled more than 7 days ago and keeps queued ones of any age', async () => {
    const now = Date.now();
    const old = now - settledStatusRetentionMs - hour;
    const sentLongAgo = await queuedMessage('sent', old);
    const failedLongAgo = await queuedMessage('failed', now - 30 * day);
    const sentYesterday = await queuedMessage('sent', now - day);
    const failedLastWeek = await queuedMessage('failed', now - settledStatusRetentionMs + hour);
    const queuedLongAgo = await queuedMessage('queued', now - 30 * day);
    const queuedNow = await queuedMessage('queued', now);

    const report = await createHousekeeping({ state, tables, now: () => now }).run();

    expect(report.problems).toEqual([]);
    expect(report.settledStatusesRemoved).toBe(2);
    for (const id of [sentLongAgo, failedLongAgo])
      expect(await statuses.get('alerts-app', id), id).toBeUndefined();
    const kept = async (id: string) => (await statuses.get('alerts-app', id))?.status.state;
    expect(await kept(sentYesterday)).toBe('sent');
    expect(await kept(failedLastWeek)).toBe('failed');
    expect(await kept(queuedLongAgo)).toBe('queued');
    expect(await kept(queuedNow)).toBe('queued');
  });

  it('removes sign-ins nobody finished and keeps those under way and rows without an expiry', async () => {
    const now = Date.now();
    const consents = createPendingConsents(state, () => now);
    const pending = (mailbox: string, expiresAt: number) => ({
      mailbox,
      nonce: randomUUID(),
      browserBindingSha256: 'ab'.repeat(32),
      expiresAt,
    });
    const abandoned = `abandoned-${randomUUID()}`;
    const underWay = `under-way-${randomUUID()}`;
    await consents.save(abandoned, pending('shared@contoso.com', now - 60_000));
    await consents.save(underWay, pending('shared@contoso.com', now + 540_000));
    await state.insert('mailbox', 'shared@contoso.com', {
      mailbox: 'shared@contoso.com',
      connectedAt: new Date(now - 90 * day).toISOString(),
      needsConsent: false,
    });

    const report = await createHousekeeping({ state, tables, now: () => now }).run();

    expect(report).toMatchObject({ expiredStateRows: 1, problems: [] });
    expect(await state.read('consent', pendingConsentKey(abandoned))).toBeUndefined();
    expect((await state.read('consent', pendingConsentKey(underWay)))?.value).toMatchObject({
      mailbox: 'shared@contoso.com',
    });
    expect((await state.read('mailbox', 'shared@contoso.com'))?.value).toMatchObject({ needsConsent: false });
  });

  it('reports a part whose tables cannot be reached and still removes expired state', async () => {
    const now = Date.now();
    await state.insert('consent', `expired-${randomUUID()}`, { mailbox: 'shared@contoso.com' }, now - 1);
    const unreachable = (): HousekeepingTables => {
      throw new RelayError('storage_unavailable');
    };

    const report = await createHousekeeping({ state, tables: unreachable, now: () => now }).run();

    expect(report.expiredStateRows).toBe(1);
    expect(report.idempotencyKeysRemoved).toBe(0);
    expect(report.settledStatusesRemoved).toBe(0);
    expect(report.problems).toHaveLength(2);
    expect(report.problems[0]).toMatch(/^idempotency keys: /);
    expect(report.problems[1]).toMatch(/^settled statuses: /);
  });

  it('reports a state table that fails and still cleans the storage tables', async () => {
    const now = Date.now();
    await answeredAt(now - 2 * day, 'invoice-2026-100');
    const settled = await queuedMessage('sent', now - 10 * day);
    const failingState: StateTable = {
      ...state,
      removeExpired: () => Promise.reject(new RelayError('storage_unavailable')),
    };

    const report = await createHousekeeping({ state: failingState, tables, now: () => now }).run();

    expect(report.problems).toEqual([expect.stringMatching(/^expired state: .*storage account/)]);
    expect(report.idempotencyKeysRemoved).toBe(1);
    expect(report.settledStatusesRemoved).toBe(1);
    expect(await statuses.get('alerts-app', settled)).toBeUndefined();
  });
});
