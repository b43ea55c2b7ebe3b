import type { SecretProperties, SecretRecord, SecretStore, SetSecretOptions } from './secretStore.ts';

/**
 * Keeps secrets in memory so a send never waits on Key Vault once warm. A value older than the TTL is
 * still served while one background read refreshes it; a failed refresh keeps the old value. Only a name
 * never seen before waits for the store, and concurrent first reads share one request.
 */
export interface CachedSecretStore extends SecretStore {
  /** Forget a value, e.g. after Entra said the client secret is wrong: the next read goes to the store. */
  invalidate(name: string): void;
}

interface CacheEntry {
  record: SecretRecord | undefined;
  loadedAt: number;
}

// A missing secret is remembered briefly only, so one created by an administrator is picked up soon.
const missingSecretTtlMs = 15_000;

export function createCachedSecretStore(
  inner: SecretStore,
  options: { ttlSeconds: number; now?: () => number },
): CachedSecretStore {
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlSeconds * 1000;
  const entries = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<SecretRecord | undefined>>();

  function load(name: string): Promise<SecretRecord | undefined> {
    const pending = inFlight.get(name);
    if (pending !== undefined) return pending;
    const request = inner
      .getSecret(name)
      .then((record) => {
        entries.set(name, { record, loadedAt: now() });
        return record;
      })
      .finally(() => inFlight.delete(name));
    inFlight.set(name, request);
    return request;
  }

  function isFresh(entry: CacheEntry): boolean {
    const age = now() - entry.loadedAt;
    return age < (entry.record === undefined ? Math.min(ttlMs, missingSecretTtlMs) : ttlMs);
  }

  return {
    kind: inner.kind,
    async getSecret(name: string): Promise<SecretRecord | undefined> {
      const entry = entries.get(name);
      if (entry === undefined || entry.record === undefined) {
        if (entry !== undefined && isFresh(entry)) return undefined;
        return load(name);
      }
      if (!isFresh(entry)) load(name).catch(() => undefined);
      return entry.record;
    },
    async setSecret(name: string, value: string, setOptions?: SetSecretOptions): Promise<void> {
      await inner.setSecret(name, value, setOptions);
      entries.set(name, {
        record: {
          name,
          value,
          tags: setOptions?.tags ?? {},
          contentType: setOptions?.contentType,
          expiresOn: setOptions?.expiresOn,
          updatedOn: new Date(now()),
        },
        loadedAt: now(),
      });
    },
    listSecrets(): Promise<SecretProperties[]> {
      return inner.listSecrets();
    },
    async deleteSecret(name: string): Promise<void> {
      await inner.deleteSecret(name);
      entries.delete(name);
    },
    invalidate(name: string): void {
      entries.delete(name);
    },
  };
}
