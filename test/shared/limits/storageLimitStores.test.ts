import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import { createMailboxLimits } from '../../../shared/limits/mailboxLimits.ts';
import {
  createBlobSessionSlots,
  createTableScheduleStore,
} from '../../../shared/limits/storageLimitStores.ts';
import { createRelayStorage, type RelayStorage } from '../../../shared/storage/relayStorage.ts';
import { type Azurite, startAzurite } from '../../support/azurite.ts';

/**
 * The shared limits' stores against Azurite, each "instance" with its own clients and its own memory, as
 * separate processes would have (the several-process test is test/durable/sharedLimits.test.ts): what one
 * instance reserved or holds, the others see; concurrent reservations never share a start.
 */
let azurite: Azurite;
const instances: RelayStorage[] = [];

function instance(): RelayStorage {
  const config = loadConfig({ RELAY_STORAGE_CONNECTION: azurite.connectionString });
  const storage = createRelayStorage(config.storage);
  instances.push(storage);
  return storage;
}

beforeAll(async () => {
  azurite = await startAzurite();
});

afterAll(async () => {
  await azurite?.stop();
});

describe('shared limit stores', () => {
  it('gives concurrent reservations from three instances distinct starts within the rate', async () => {
    const policy = { messagesPerMinute: 20, recipientsPerDay: 10_000 };
    const stores = [instance(), instance(), instance()].map((storage) =>
      createTableScheduleStore(storage.mailboxLimits, storage.ready),
    );
    const limits = stores.map((store) => createMailboxLimits(store, policy));
    // 60 queued messages for one mailbox, 20 from each instance at once.
    const starts = await Promise.all(
      Array.from({ length: 60 }, (_, index) =>
        limits[index % 3]?.reserve('shared@contoso.com', { recipients: 1, spaced: true }),
      ),
    );
    const sorted = (starts as number[]).sort((a, b) => a - b);
    expect(new Set(sorted).size).toBe(60);
    // Spaced 3 s apart (60 s / 20): a fresh instance reading the row sees the whole backlog.
    for (let index = 1; index < sorted.length; index += 1)
      expect((sorted[index] ?? 0) - (sorted[index - 1] ?? 0)).toBeGreaterThanOrEqual(3_000);
    const fresh = createMailboxLimits(
      createTableScheduleStore(instance().mailboxLimits, instance().ready),
      policy,
    );
    expect((await fresh.headroom('shared@contoso.com')).waitMs).toBeGreaterThan(170_000);
    const operations = stores.reduce((sum, store) => sum + store.operations, 0);
    process.stdout.write(
      `schedule store: ${(operations / 60).toFixed(2)} storage operations per reservation with 3 writers at once\n`,
    );
  });

  it('costs one storage operation per reservation when one instance sends alone', async () => {
    const storage = instance();
    const store = createTableScheduleStore(storage.mailboxLimits, storage.ready);
    const limits = createMailboxLimits(store, { messagesPerMinute: 1_000, recipientsPerDay: 1_000_000 });
    await limits.reserve('alone@contoso.com', { recipients: 1, spaced: false });
    const before = store.operations;
    for (let index = 0; index < 20; index += 1)
      await limits.reserve('alone@contoso.com', { recipients: 1, spaced: false });
    expect(store.operations - before).toBe(20);
  });

  it('hands out each SMTP session slot to one holder at a time, over instances', async () => {
    const slotsOf = [instance(), instance()].map((storage) =>
      createBlobSessionSlots(storage.sessionSlots, storage.ready),
    );
    const [first, second] = slotsOf as [
      ReturnType<typeof createBlobSessionSlots>,
      ReturnType<typeof createBlobSessionSlots>,
    ];
    const held = await Promise.all([
      first.tryTake('slots@contoso.com', 3),
      second.tryTake('slots@contoso.com', 3),
      first.tryTake('slots@contoso.com', 3),
    ]);
    expect(held.every((slot) => slot !== undefined)).toBe(true);
    expect(new Set(held.map((slot) => slot?.slot))).toEqual(new Set([0, 1, 2]));
    expect(await second.tryTake('slots@contoso.com', 3), 'a 4th session').toBeUndefined();
    expect(await held[0]?.renew()).toBe(true);

    await held[1]?.release();
    const again = await second.tryTake('slots@contoso.com', 3);
    expect(again?.slot).toBe(held[1]?.slot);
    // A released holder cannot renew what another now holds.
    expect(await held[1]?.renew()).toBe(false);
    // Another mailbox has its own slots.
    expect(await first.tryTake('other@contoso.com', 3)).toBeDefined();
  });
});
