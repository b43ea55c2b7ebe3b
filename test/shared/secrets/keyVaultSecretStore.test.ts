import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayError } from '../../../shared/errors.ts';
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
    recoveryPollIntervalMs: 1,
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

describe('Key Vault secret store over a deleted name (soft delete, as the real vault)', () => {
  it('sets a secret someone deleted: recovers it, then the new value is current', async () => {
    await store.setSecret('msal-cache-deleted-once', 'first sign-in');
    await store.deleteSecret('msal-cache-deleted-once');
    const recoveriesBefore = vault.countOperations('recover');

    await store.setSecret('msal-cache-deleted-once', 'second sign-in');

    expect((await store.getSecret('msal-cache-deleted-once'))?.value).toBe('second sign-in');
    expect(vault.countOperations('recover') - recoveriesBefore).toBe(1);
    expect(vault.secretVersions('msal-cache-deleted-once').map((version) => version.value)).toEqual([
      'first sign-in',
      'second sign-in',
    ]);
  });

  it('waits while Key Vault is still recovering, then writes', async () => {
    await store.setSecret('msal-cache-slow-recovery', 'old');
    await store.deleteSecret('msal-cache-slow-recovery');
    vault.lagRecoveries(3);
    try {
      await store.setSecret('msal-cache-slow-recovery', 'new');
    } finally {
      vault.lagRecoveries(0);
    }
    expect(vault.secretValue('msal-cache-slow-recovery')).toBe('new');
  });

  it('writes once a recovery another instance started has finished (409 ObjectIsBeingRecovered meanwhile)', async () => {
    await store.setSecret('msal-cache-recovered-elsewhere', 'old');
    await store.deleteSecret('msal-cache-recovered-elsewhere');
    const otherInstance = new SecretClient(vault.vaultUrl, vaultCredential, {
      disableChallengeResourceVerification: true,
    });
    vault.lagRecoveries(3);
    const recoveriesBefore = vault.countOperations('recover');
    try {
      await otherInstance.beginRecoverDeletedSecret('msal-cache-recovered-elsewhere');
      await store.setSecret('msal-cache-recovered-elsewhere', 'new');
    } finally {
      vault.lagRecoveries(0);
    }
    expect(vault.secretValue('msal-cache-recovered-elsewhere')).toBe('new');
    expect(vault.countOperations('recover') - recoveriesBefore).toBe(1);
    const refusedWrites = vault.requests.filter(
      (request) =>
        request.method === 'PUT' &&
        request.path.startsWith('/secrets/msal-cache-recovered-elsewhere') &&
        request.status === 409,
    );
    expect(refusedWrites.length).toBeGreaterThan(0);
  });

  it('says how to free the name when its identity may not recover it', async () => {
    await store.setSecret('msal-cache-no-recover', 'old');
    await store.deleteSecret('msal-cache-no-recover');
    vault.denyOperations(['recover']);
    const failure = await store
      .setSecret('msal-cache-no-recover', 'refresh-token-cache-never-shown')
      .catch((error: unknown) => error)
      .finally(() => vault.denyOperations([]));

    expect(failure).toMatchObject({
      code: 'secret_store_access_denied',
      message: expect.stringContaining('msal-cache-no-recover'),
      remedy: expect.stringContaining(
        'az keyvault secret recover --vault-name localhost --name msal-cache-no-recover',
      ),
    });
    expect((failure as RelayError).remedy).toContain(
      'az keyvault secret purge --vault-name localhost --name msal-cache-no-recover',
    );
    const { message, remedy, details } = failure as RelayError;
    expect(JSON.stringify({ message, remedy, details })).not.toContain('refresh-token-cache-never-shown');
    expect(vault.secretValue('msal-cache-no-recover')).toBeUndefined();
  });
});
