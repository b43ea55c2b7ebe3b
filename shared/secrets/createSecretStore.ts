import type { TokenCredential } from '@azure/identity';
import type { RelayConfig } from '../config.ts';
import { type CachedSecretStore, createCachedSecretStore } from './cachedSecretStore.ts';
import { createFileSecretStore } from './fileSecretStore.ts';
import { createKeyVaultSecretStore } from './keyVaultSecretStore.ts';

/**
 * Key Vault when a vault URL is configured, otherwise the local file store (the embedded default for
 * development). Either way wrapped in the in-memory cache.
 */
export async function createSecretStore(
  config: RelayConfig['secrets'],
  credential?: () => Promise<TokenCredential>,
): Promise<CachedSecretStore> {
  if (config.keyVaultUrl === undefined) {
    return createCachedSecretStore(createFileSecretStore(config.localSecretsPath), {
      ttlSeconds: config.cacheSeconds,
    });
  }
  const vaultCredential = credential === undefined ? await defaultAzureCredential() : await credential();
  const vault = await createKeyVaultSecretStore({
    vaultUrl: config.keyVaultUrl,
    credential: vaultCredential,
  });
  return createCachedSecretStore(vault, { ttlSeconds: config.cacheSeconds });
}

/**
 * In Azure the vault is reached as the Function App's user-assigned identity (RELAY_MANAGED_IDENTITY_CLIENT_ID);
 * DefaultAzureCredential alone would only try the system-assigned one. Locally it falls back to `az login`.
 */
export async function defaultAzureCredential(managedIdentityClientId?: string): Promise<TokenCredential> {
  const { DefaultAzureCredential } = await import('@azure/identity');
  return new DefaultAzureCredential(managedIdentityClientId === undefined ? {} : { managedIdentityClientId });
}
