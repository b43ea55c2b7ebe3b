import { setTimeout as wait } from 'node:timers/promises';
import type { TokenCredential } from '@azure/identity';
import type {
  KeyVaultSecret,
  SecretClient,
  SecretClientOptions,
  SecretProperties as VaultSecretProperties,
} from '@azure/keyvault-secrets';
import { RelayError } from '../errors.ts';
import type { SecretProperties, SecretRecord, SecretStore, SetSecretOptions } from './secretStore.ts';

/**
 * Azure Key Vault through the real SecretClient. Every set creates a new version, so the last good value
 * is never destroyed before the new one exists. The SDK retries 429 and 503 itself, honouring Retry-After;
 * what still fails becomes a RelayError a person can act on. Key Vault is not a runtime database: callers
 * wrap this store in the in-memory cache (cachedSecretStore.ts).
 *
 * Soft delete is always on in Key Vault: a deleted secret keeps its name reserved for its retention period,
 * and setting it answers 409 ObjectIsDeletedButRecoverable. A set therefore recovers the deleted secret and
 * writes the new value over it, so a mailbox whose token-cache secret someone deleted connects again at once.
 */
export interface KeyVaultStoreOptions {
  vaultUrl: string;
  credential: TokenCredential;
  clientOptions?: SecretClientOptions;
  /** How often to check whether Key Vault has finished recovering a deleted secret; 1 s by default. */
  recoveryPollIntervalMs?: number;
}

// Key Vault recovers a secret within seconds; past this the request fails as transient.
const recoveryTimeoutMs = 60_000;

export async function createKeyVaultSecretStore(options: KeyVaultStoreOptions): Promise<SecretStore> {
  // Loaded on first use: the SDK is heavy and a function app that never touches Key Vault should not pay.
  const { SecretClient: Client } = await import('@azure/keyvault-secrets');
  const client: SecretClient = new Client(options.vaultUrl, options.credential, {
    retryOptions: { maxRetries: 4, retryDelayInMs: 500, maxRetryDelayInMs: 8000 },
    ...options.clientOptions,
  });
  const vault = new URL(options.vaultUrl).host;
  const recoveryPollIntervalMs = options.recoveryPollIntervalMs ?? 1000;

  async function call<T>(operation: string, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      throw mapKeyVaultError(error, vault, operation);
    }
  }

  async function recoverDeleted(name: string, deadline: number): Promise<void> {
    const abortSignal = AbortSignal.timeout(Math.max(deadline - Date.now(), 0));
    try {
      const poller = await client.beginRecoverDeletedSecret(name, { intervalInMs: recoveryPollIntervalMs });
      await poller.pollUntilDone({ abortSignal });
    } catch (error) {
      if (abortSignal.aborted) throw stillRecovering(vault, name);
      const status = statusOf(error);
      if (status === 403) throw recoveryRefused(vault, name);
      // 409: another instance is recovering it; 404: it was recovered or purged meanwhile. Either way the
      // next write settles it.
      if (status === 409 || status === 404) return;
      throw mapKeyVaultError(error, vault, `recover the deleted secret ${name}`);
    }
  }

  return {
    kind: 'key-vault',
    async getSecret(name: string): Promise<SecretRecord | undefined> {
      try {
        const secret = await client.getSecret(name);
        return toRecord(secret);
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw mapKeyVaultError(error, vault, `read ${name}`);
      }
    },
    async setSecret(name: string, value: string, setOptions: SetSecretOptions = {}): Promise<void> {
      const write = () =>
        client.setSecret(name, value, {
          ...(setOptions.tags === undefined ? {} : { tags: setOptions.tags }),
          ...(setOptions.contentType === undefined ? {} : { contentType: setOptions.contentType }),
          ...(setOptions.expiresOn === undefined ? {} : { expiresOn: setOptions.expiresOn }),
        });
      const deadline = Date.now() + recoveryTimeoutMs;
      for (let attempt = 0; ; attempt += 1) {
        try {
          await write();
          return;
        } catch (error) {
          const conflict = softDeleteConflictOf(error);
          if (conflict === undefined) throw mapKeyVaultError(error, vault, `write ${name}`);
          // Right after a recovery Key Vault may still answer ObjectIsBeingRecovered for some seconds.
          if (attempt > 0) {
            if (Date.now() + recoveryPollIntervalMs > deadline) throw stillRecovering(vault, name);
            await wait(recoveryPollIntervalMs);
          }
          if (conflict === 'ObjectIsDeletedButRecoverable') await recoverDeleted(name, deadline);
        }
      }
    },
    async listSecrets(): Promise<SecretProperties[]> {
      return call('list secrets', async () => {
        const found: SecretProperties[] = [];
        for await (const properties of client.listPropertiesOfSecrets()) found.push(toProperties(properties));
        return found;
      });
    },
    async deleteSecret(name: string): Promise<void> {
      try {
        const poller = await client.beginDeleteSecret(name);
        await poller.pollUntilDone();
      } catch (error) {
        if (statusOf(error) === 404) return;
        throw mapKeyVaultError(error, vault, `delete ${name}`);
      }
    },
  };
}

function toProperties(properties: VaultSecretProperties): SecretProperties {
  return {
    name: properties.name,
    tags: properties.tags ?? {},
    contentType: properties.contentType,
    expiresOn: properties.expiresOn,
    updatedOn: properties.updatedOn,
  };
}

function toRecord(secret: KeyVaultSecret): SecretRecord {
  return { ...toProperties(secret.properties), value: secret.value ?? '' };
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

function retryAfterOf(error: unknown): number | undefined {
  const headers = (error as { response?: { headers?: { get(name: string): string | undefined } } }).response
    ?.headers;
  const value = Number(headers?.get('retry-after'));
  return Number.isFinite(value) && value > 0 ? Math.ceil(value) : undefined;
}

type SoftDeleteConflict = 'ObjectIsDeletedButRecoverable' | 'ObjectIsBeingRecovered';

/**
 * The inner code of a 409 about a soft-deleted name. Key Vault sends `{ error: { innererror: { code } } }`;
 * the SDK hands the body over as `details`, with the key renamed `innerError`.
 */
function softDeleteConflictOf(error: unknown): SoftDeleteConflict | undefined {
  if (statusOf(error) !== 409) return undefined;
  type InnerError = { code?: unknown } | undefined;
  const body = (error as { details?: { error?: { innerError?: InnerError; innererror?: InnerError } } })
    .details?.error;
  const innerCode = (body?.innerError ?? body?.innererror)?.code;
  return innerCode === 'ObjectIsDeletedButRecoverable' || innerCode === 'ObjectIsBeingRecovered'
    ? innerCode
    : undefined;
}

/** `contoso-relay` for `contoso-relay.vault.azure.net`, as the az CLI wants it. */
function vaultNameOf(vault: string): string {
  return vault.split(':')[0]?.split('.')[0] ?? vault;
}

function recoveryRefused(vault: string, secretName: string): RelayError {
  const vaultName = vaultNameOf(vault);
  return new RelayError('secret_store_access_denied', {
    message: `The secret ${secretName} in Key Vault ${vault} was deleted, and Key Vault keeps a deleted name reserved until it is recovered or purged; the relay may not recover it (403).`,
    remedy: `Recover it: az keyvault secret recover --vault-name ${vaultName} --name ${secretName}. Or, when the vault's purge protection is off, purge it: az keyvault secret purge --vault-name ${vaultName} --name ${secretName}. Then try again. To let the relay do this itself, give its identity the 'Key Vault Secrets Officer' role on the vault, which includes recover.`,
    details: { vault, secretName },
  });
}

function stillRecovering(vault: string, secretName: string): RelayError {
  return new RelayError('secret_store_unavailable', {
    message: `Key Vault ${vault} had not finished recovering the deleted secret ${secretName} after ${recoveryTimeoutMs / 1000} s.`,
    remedy: 'Retry in a minute: the recovery continues in Key Vault.',
  });
}

export function mapKeyVaultError(error: unknown, vault: string, operation: string): RelayError {
  if (error instanceof RelayError) return error;
  const status = statusOf(error);
  if (status === 429) {
    return new RelayError('secret_store_throttled', {
      message: `Key Vault ${vault} is throttling requests (429) and kept doing so after retries (${operation}).`,
      retryAfterSeconds: retryAfterOf(error),
    });
  }
  if (status === 401 || status === 403) {
    return new RelayError('secret_store_access_denied', {
      message: `Key Vault ${vault} refused to ${operation} (${status}).`,
    });
  }
  if (status !== undefined && status < 500) {
    return new RelayError('secret_store_rejected', {
      message: `Key Vault ${vault} rejected the request to ${operation} (${status}).`,
    });
  }
  return new RelayError('secret_store_unavailable', {
    message: `Key Vault ${vault} could not be reached to ${operation}${status === undefined ? '' : ` (${status})`}.`,
    retryAfterSeconds: retryAfterOf(error),
  });
}
