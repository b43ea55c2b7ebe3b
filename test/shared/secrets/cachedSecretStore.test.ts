import { describe, expect, it } from 'vitest';
import { createCachedSecretStore } from '../../../shared/secrets/cachedSecretStore.ts';
import type {
  SecretProperties,
  SecretRecord,
  SecretStore,
  SetSecretOptions,
} from '../../../shared/secrets/secretStore.ts';

/** A real SecretStore held in memory that counts the reads reaching it, per name. */
function countingStore() {
  const values = new Map<string, SecretRecord>();
  const reads = new Map<string, number>();
  const store: SecretStore = {
    kind: 'file',
    async getSecret(name: string) {
      reads.set(name, (reads.get(name) ?? 0) + 1);
      return values.get(name);
    },
    async setSecret(name: string, value: string, options: SetSecretOptions = {}) {
      values.set(name, {
        name,
        value,
        tags: options.tags ?? {},
        contentType: options.contentType,
        expiresOn: options.expiresOn,
        updatedOn: new Date(),
      });
    },
    async listSecrets(): Promise<SecretProperties[]> {
      return [...values.values()].map(({ value: _value, ...properties }) => properties);
    },
    async deleteSecret(name: string) {
      values.delete(name);
    },
  };
  return {
    store,
    readsOf: (name: string) => reads.get(name) ?? 0,
    totalReads: () => [...reads.values()].reduce((sum, count) => sum + count, 0),
  };
}

const madeUpNames = Array.from({ length: 10_000 }, (_, index) => `pending-consent-forged-${index}`);

describe('cached secret store', () => {
  it('stays bounded after 10,000 reads of made-up names', async () => {
    const inner = countingStore();
    await inner.store.setSecret('relay-client-secret', 'app-secret');
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300 });
    await cached.getSecret('relay-client-secret');

    for (const name of madeUpNames) expect(await cached.getSecret(name)).toBeUndefined();

    expect(cached.size()).toEqual({ secrets: 1, misses: 32 });
    expect((await cached.getSecret('relay-client-secret'))?.value).toBe('app-secret');
  });

  it('serves a hot secret from memory while made-up names flood it', async () => {
    const inner = countingStore();
    await inner.store.setSecret('relay-client-secret', 'app-secret');
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300 });

    for (const name of madeUpNames) {
      expect((await cached.getSecret('relay-client-secret'))?.value).toBe('app-secret');
      await cached.getSecret(name);
    }

    expect(inner.readsOf('relay-client-secret')).toBe(1);
  });

  it('drops the least recently used secret beyond its limit, never a recently read one', async () => {
    const inner = countingStore();
    for (const name of ['first', 'second', 'third', 'fourth']) await inner.store.setSecret(name, name);
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300, maxSecrets: 3 });
    for (const name of ['first', 'second', 'third', 'first', 'fourth']) await cached.getSecret(name);

    expect(cached.size().secrets).toBe(3);
    await cached.getSecret('first');
    await cached.getSecret('second');
    expect(inner.readsOf('first')).toBe(1);
    expect(inner.readsOf('second')).toBe(2);
  });

  it('remembers a recent miss, so a repeated unknown name reaches the store once', async () => {
    const inner = countingStore();
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300 });
    for (let attempt = 0; attempt < 20; attempt += 1) await cached.getSecret('never-stored');
    expect(inner.readsOf('never-stored')).toBe(1);
  });

  it('picks up a secret created after a miss once the short miss lifetime passed', async () => {
    let clock = Date.now();
    const inner = countingStore();
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300, now: () => clock });
    expect(await cached.getSecret('created-later')).toBeUndefined();
    await inner.store.setSecret('created-later', 'by an administrator');
    clock += 15_000;
    expect((await cached.getSecret('created-later'))?.value).toBe('by an administrator');
    expect(cached.size()).toEqual({ secrets: 1, misses: 0 });
  });

  it('shares one store read among concurrent first reads, also of a missing name', async () => {
    const inner = countingStore();
    await inner.store.setSecret('cold-secret', 'cold');
    const cached = createCachedSecretStore(inner.store, { ttlSeconds: 300 });
    await Promise.all(
      Array.from({ length: 20 }, () => [cached.getSecret('cold-secret'), cached.getSecret('absent')]).flat(),
    );
    expect(inner.totalReads()).toBe(2);
  });
});
