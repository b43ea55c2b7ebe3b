import type { SecretProperties, SecretRecord, SecretStore, SetSecretOptions } from './secretStore.ts';

/**
 * Keeps secrets in memory so a send never waits on Key Vault once warm. A value older than the TTL is
 * still served while one background read refreshes it; a failed refresh keeps the old value. Only a name
 * not in memory waits for the store, and concurrent first reads share one request.
 *
 * Both halves are bounded, because some names come from anonymous requests: at most `maxSecrets` values
 * (the relay holds a few per mailbox) and far fewer remembered misses, each least recently used first out.
 * A flood of made-up names then costs a fixed amount of memory and pushes out only other misses.
 */
export interface CachedSecretStore extends SecretStore {
  /** Forget a value, e.g. after Entra said the client secret is wrong: the next read goes to the store. */
  invalidate(name: string): void;
  /** How many names are held in memory now, for diagnostics and tests. */
  size(): CachedSecretCounts;
}

export interface CachedSecretCounts {
  secrets: number;
  misses: number;
}

export interface CachedSecretStoreOptions {
  ttlSeconds: number;
  /** Values kept at most; 256 by default. */
  maxSecrets?: number;
  /** Names remembered as missing at most; 32 by default. */
  maxMisses?: number;
  now?: () => number;
}

interface CachedSecret {
  record: SecretRecord;
  loadedAt: number;
}

// A missing secret is remembered briefly only, so one created by an administrator is picked up soon.
const missingSecretTtlMs = 15_000;
const defaultMaxSecrets = 256;
const defaultMaxMisses = 32;

export function createCachedSecretStore(
  inner: SecretStore,
  options: CachedSecretStoreOptions,
): CachedSecretStore {
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlSeconds * 1000;
  const missTtlMs = Math.min(ttlMs, missingSecretTtlMs);
  const secrets = new BoundedMap<CachedSecret>(options.maxSecrets ?? defaultMaxSecrets);
  const missedAt = new BoundedMap<number>(options.maxMisses ?? defaultMaxMisses);
  const inFlight = new Map<string, Promise<SecretRecord | undefined>>();

  function remember(name: string, record: SecretRecord | undefined): void {
    if (record === undefined) {
      secrets.delete(name);
      missedAt.set(name, now());
    } else {
      missedAt.delete(name);
      secrets.set(name, { record, loadedAt: now() });
    }
  }

  function forget(name: string): void {
    secrets.delete(name);
    missedAt.delete(name);
  }

  function load(name: string): Promise<SecretRecord | undefined> {
    const pending = inFlight.get(name);
    if (pending !== undefined) return pending;
    const request = inner
      .getSecret(name)
      .then((record) => {
        remember(name, record);
        return record;
      })
      .finally(() => inFlight.delete(name));
    inFlight.set(name, request);
    return request;
  }

  return {
    kind: inner.kind,
    async getSecret(name: string): Promise<SecretRecord | undefined> {
      const cached = secrets.touch(name);
      if (cached !== undefined) {
        if (now() - cached.loadedAt >= ttlMs) load(name).catch(() => undefined);
        return cached.record;
      }
      const missed = missedAt.touch(name);
      if (missed !== undefined && now() - missed < missTtlMs) return undefined;
      return load(name);
    },
    async setSecret(name: string, value: string, setOptions?: SetSecretOptions): Promise<void> {
      await inner.setSecret(name, value, setOptions);
      remember(name, {
        name,
        value,
        tags: setOptions?.tags ?? {},
        contentType: setOptions?.contentType,
        expiresOn: setOptions?.expiresOn,
        updatedOn: new Date(now()),
      });
    },
    listSecrets(): Promise<SecretProperties[]> {
      return inner.listSecrets();
    },
    async deleteSecret(name: string): Promise<void> {
      await inner.deleteSecret(name);
      forget(name);
    },
    invalidate: forget,
    size(): CachedSecretCounts {
      return { secrets: secrets.size, misses: missedAt.size };
    },
  };
}

/** A Map that drops its least recently used entry beyond `capacity` (a Map iterates in insertion order). */
class BoundedMap<Value> {
  readonly #entries = new Map<string, Value>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The value, now marked as the most recently used. */
  touch(key: string): Value | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  set(key: string, value: Value): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#capacity) break;
      this.#entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}
