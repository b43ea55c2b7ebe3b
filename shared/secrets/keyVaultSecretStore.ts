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
 */
export interface KeyVaultStoreOptions {
  vaultUrl: string;
  credential: TokenCredential;
  clientOptions?: SecretClientOptions;
}

export async function createKeyVaultSecretStore(options: KeyVaultStoreOptions): Promise<SecretStore> {
  // Loaded on first use: the SDK is heavy and a function app that never touches Key Vault should not pay.
  const { SecretClient: Client } = await import('@azure/keyvault-secrets');
  const client: SecretClient = new Client(options.vaultUrl, options.credential, {
    retryOptions: { maxRetries: 4, retryDelayInMs: 500, maxRetryDelayInMs: 8000 },
    ...options.clientOptions,
  });
  const vault = new URL(options.vaultUrl).host;

  async function call<T>(operation: string, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      throw mapKeyVaultError(error, vault, operation);
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
      await call(`write ${name}`, () =>
        client.setSecret(name, value, {
          ...(setOptions.tags === undefined ? {} : { tags: setOptions.tags }),
          ...(setOptions.contentType === undefined ? {} : { contentType: setOptions.contentType }),
          ...(setOptions.expiresOn === undefined ? {} : { expiresOn: setOptions.expiresOn }),
        }),
      );
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
