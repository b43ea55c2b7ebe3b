import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCachedSecretStore } from '../../../shared/secrets/cachedSecretStore.ts';
import { createKeyVaultSecretStore } from '../../../shared/secrets/keyVaultSecretStore.ts';
import type { SecretStore } from '../../../shared/secrets/secretStore.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../../peers/keyVaultPeer.ts';
import { describeSecretStoreContract } from './secretStoreContract.ts';

const vaultCredential = {
  getToken: async () => ({ token: 'vault-access-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
};

let vault: KeyVaultPeer;
let store: SecretStore;

async function openVaultStore(): Promise<SecretStore> {
  return createKeyVaultSecretStore({
    vaultUrl: vault.vaultUrl,
    credential: vaultCredential,
    clientOptions: {
      disableChallengeResourceVerification: true,
      retryOptions: { maxRetries: 2, retryDelayInMs: 10, maxRetryDelayInMs: 50 },
    },
  });
}

beforeAll(async () => {
  vault = await startKeyVaultPeer();
  store = await openVaultStore();
});

afterAll(async () => {
  await vault?.close();
});

describeSecretStoreContract('Key Vault', () => store);

describe('Key Vault secret store', () => {
  it('writes a new version and keeps the previous one', async () => {
    await store.setSecret('mailbox-cache', 'version-1');
    await store.setSecret('mailbox-cache', 'version-2');
    expect(vault.secretVersions('mailbox-cache').map((version) => version.value)).toEqual([
      'version-1',
      'version-2',
    ]);
  });

  it('rides out a short burst of 429s (the SDK honours Retry-After)', async () => {
    vault.putSecretDirect('throttled-secret', 'still-here');
    vault.failNext({ status: 429, retryAfterSeconds: 0, times: 2 });
    expect((await store.getSecret('throttled-secret'))?.value).toBe('still-here');
  });

  it('turns lasting throttling into a 503 with Retry-After', async () => {
    // The store's client makes 3 attempts (maxRetries 2): all of them are throttled.
    vault.failNext({ status: 429, retryAfterSeconds: 0, times: 3 });
    const failure = await store.getSecret('throttled-secret').catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'secret_store_throttled', status: 503, transient: true });
    expect((failure as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThan(0);
  });

  it('reads a warm secret from memory: no vault request on the send path', async () => {
    vault.putSecretDirect('relay-client-secret', 'cached-value');
    const cached = createCachedSecretStore(store, { ttlSeconds: 300 });
    await cached.getSecret('relay-client-secret');
    const readsBefore = vault.countOperations('get');
    const values = await Promise.all(
      Array.from({ length: 50 }, () => cached.getSecret('relay-client-secret')),
    );
    expect(values.every((secret) => secret?.value === 'cached-value')).toBe(true);
    expect(vault.countOperations('get')).toBe(readsBefore);
  });

  it('shares one vault read among concurrent first reads', async () => {
    vault.putSecretDirect('cold-secret', 'cold');
    const cached = createCachedSecretStore(store, { ttlSeconds: 300 });
    const readsBefore = vault.countOperations('get');
    await Promise.all(Array.from({ length: 20 }, () => cached.getSecret('cold-secret')));
    expect(vault.countOperations('get') - readsBefore).toBe(1);
  });

  it('serves the last good value while the vault is throttling, and refreshes it afterwards', async () => {
    let clock = Date.now();
    vault.putSecretDirect('stale-ok', 'old');
    const cached = createCachedSecretStore(store, { ttlSeconds: 60, now: () => clock });
    expect((await cached.getSecret('stale-ok'))?.value).toBe('old');
    vault.putSecretDirect('stale-ok', 'new');
    const throttled = () => vault.requests.filter((request) => request.status === 429).length;
    const throttledBefore = throttled();
    vault.failNext({ status: 429, retryAfterSeconds: 0, times: 3 });
    clock += 61_000;
    expect((await cached.getSecret('stale-ok'))?.value).toBe('old');
    await expect.poll(throttled).toBe(throttledBefore + 3);
    // After the failed background read the value is still old; the next read past the TTL refreshes it.
    await cached.getSecret('stale-ok');
    await expect.poll(async () => (await cached.getSecret('stale-ok'))?.value).toBe('new');
  });
});
