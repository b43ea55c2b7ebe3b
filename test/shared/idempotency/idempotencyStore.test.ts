import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createIdempotencyStore,
  type IdempotencyClaim,
  type IdempotencyStore,
  OMITTED_FIELDS_HEADER,
} from '../../../shared/idempotency/idempotencyStore.ts';
import { type Azurite, startAzurite } from '../../support/azurite.ts';

/**
 * The idempotency store against Azurite, which refuses a Table property over 64 KiB as Azure does: answers
 * of several hundred kilobytes come back intact, one too large for a row comes back in part (still saying
 * the message went out), and a store that cannot write at all still lets the caller have the send's answer.
 */
let azurite: Azurite;
let tableNumber = 0;

beforeAll(async () => {
  azurite = await startAzurite();
});

afterAll(async () => {
  await azurite?.stop();
});

async function freshTable(): Promise<TableClient> {
  tableNumber += 1;
  const table = TableClient.fromConnectionString(azurite.connectionString, `idempotency${tableNumber}`, {
    allowInsecureConnection: true,
  });
  await table.createTable();
  return table;
}

function storeOn(table: TableClient, logLines: string[] = []): IdempotencyStore {
  return createIdempotencyStore(
    table,
    async () => undefined,
    Date.now,
    (line) => logLines.push(line),
  );
}

async function claim(store: IdempotencyStore, key: string): Promise<IdempotencyClaim> {
  const begun = await store.begin('alerts-app', key, `fingerprint-${key}`);
  if (begun.kind !== 'claimed') throw new Error(`the key ${key} was taken already`);
  return begun;
}

/** Recipient addresses that do not compress: the answer stays several Table properties long. */
function randomAddresses(count: number, length: number): string[] {
  return Array.from(
    { length: count },
    () => `${randomBytes(length).toString('base64url').slice(0, length)}@x.example`,
  );
}

describe('idempotency store', () => {
  it('replays an answer of 600 KB that does not compress, exactly as stored', async () => {
    const store = storeOn(await freshTable());
    const answer = {
      status: 200,
      body: { messageId: '<big@relay>', accepted: randomAddresses(2000, 300), rejected: [] },
      headers: { 'x-example': 'kept' },
    };
    expect(JSON.stringify(answer).length).toBeGreaterThan(600_000);
    await (await claim(store, 'big')).complete(answer);
    const repeat = await store.begin('alerts-app', 'big', 'fingerprint-big');
    expect(repeat).toEqual({ kind: 'replay', response: answer });
  });

  it('keeps the small fields of an answer too large for a row, and names the fields left out', async () => {
    const logLines: string[] = [];
    const store = storeOn(await freshTable(), logLines);
    const accepted = randomAddresses(5000, 300);
    await (await claim(store, 'huge')).complete({
      status: 200,
      body: { messageId: '<huge@relay>', sender: 'alerts@contoso.com', accepted, rejected: [] },
      headers: {},
    });
    const repeat = await store.begin('alerts-app', 'huge', 'fingerprint-huge');
    expect(repeat).toEqual({
      kind: 'replay',
      response: {
        status: 200,
        body: { messageId: '<huge@relay>', sender: 'alerts@contoso.com', rejected: [] },
        headers: { [OMITTED_FIELDS_HEADER]: 'accepted' },
      },
    });
    expect(logLines.join('\n')).toContain('too large to store whole');
    expect(logLines.join('\n')).not.toContain(accepted[0]);
  });

  it('completes without failing when storage refuses the answer, and logs that without the answer', async () => {
    const table = await freshTable();
    const logLines: string[] = [];
    const store = storeOn(table, logLines);
    const pending = await claim(store, 'lost');
    // The table is gone between the send and its record: every write of the answer is refused.
    await table.deleteTable();
    await expect(
      pending.complete({ status: 200, body: { messageId: '<secret-subject@relay>' }, headers: {} }),
    ).resolves.toBeUndefined();
    const logged = logLines.join('\n');
    expect(logged).toContain('nothing of the answer was stored');
    expect(logged).toContain('alerts-app');
    expect(logged).not.toContain('secret-subject');
  });
});
