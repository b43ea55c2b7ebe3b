import { type CachedSecretStore, createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import {
  createKeyVaultSecretStore,
  type KeyVaultStoreOptions,
} from '../../shared/secrets/keyVaultSecretStore.ts';
import type { SecretStore } from '../../shared/secrets/secretStore.ts';
import type { KeyVaultPeer } from '../peers/keyVaultPeer.ts';

/**
 * A relay instance's secret store over the Key Vault peer, through the real SecretClient: its own client
 * (and, cached, its own memory), as each Function instance has. The peer accepts any bearer token, and it
 * lives on localhost, so the challenge's resource (https://vault.azure.net) is not checked.
 */
export function openKeyVaultStore(
  vault: KeyVaultPeer,
  options: Partial<Omit<KeyVaultStoreOptions, 'vaultUrl' | 'credential'>> = {},
): Promise<SecretStore> {
  return createKeyVaultSecretStore({
    vaultUrl: vault.vaultUrl,
    credential: {
      getToken: async () => ({ token: 'vault-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
    },
    ...options,
    clientOptions: { disableChallengeResourceVerification: true, ...options.clientOptions },
  });
}

export async function openCachedKeyVaultStore(
  vault: KeyVaultPeer,
  cache: { ttlSeconds?: number; now?: () => number } = {},
): Promise<CachedSecretStore> {
  return createCachedSecretStore(await openKeyVaultStore(vault), {
    ttlSeconds: cache.ttlSeconds ?? 300,
    ...(cache.now === undefined ? {} : { now: cache.now }),
  });
}
