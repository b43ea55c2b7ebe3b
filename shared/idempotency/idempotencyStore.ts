import type { TableClient } from '@azure/data-tables';
import { RelayError } from '../errors.ts';
import { sha256 } from '../sha256.ts';
import { withStorage } from '../storage/storageErrors.ts';

/**
 * Idempotency keys (the `Idempotency-Key` header) in Azure Table storage, one row per caller and key (its
 * own partition, keyed by a hash of both, so keys are scoped per caller and load spreads). The
 * first request inserts its row; Table storage refuses a second insert of the same row (409), so of two
 * concurrent duplicates exactly one proceeds: that conditional insert is the lock. A finished request stores
 * its response; a repeat within 24 hours gets it back and sends nothing. Updates carry the row's ETag, so a
 * request that lost its lease (it took too long, or its process died) cannot overwrite a newer owner.
 */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;
/** How long an unfinished request owns its key; after that a retry may take over (its process died). */
export const IDEMPOTENCY_LEASE_MS = 5 * 60 * 1000;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;

export interface StoredResponse {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

export interface IdempotencyClaim {
  kind: 'claimed';
  /** Stores the response for later repeats. */
  complete(response: StoredResponse): Promise<void>;
  /** Gives the key back, for outcomes a retry may change (transient failures). */
  release(): Promise<void>;
}

export type IdempotencyBegin = IdempotencyClaim | { kind: 'replay'; response: StoredResponse };

export interface IdempotencyStore {
  begin(scope: string, key: string, requestFingerprint: string): Promise<IdempotencyBegin>;
}

interface KeyEntity {
  partitionKey: string;
  rowKey: string;
  requestFingerprint: string;
  state: 'pending' | 'done';
  // Milliseconds as text: Table storage infers Int32 for bare JSON integers, which these overflow.
  createdAt: string;
  leaseUntil: string;
  responseStatus?: number;
  responseBody?: string;
  responseHeaders?: string;
}

/** Checks the header value; returns undefined when absent. */
export function readIdempotencyKey(value: string | null): string | undefined {
  if (value === null) return undefined;
  if (value.length === 0 || value.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x20-\x7e]+$/.test(value)) {
    throw new RelayError('invalid_idempotency_key', {
      message: `The Idempotency-Key header must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters.`,
    });
  }
  return value;
}

/** A fingerprint of the request that ignores key order and whitespace, so a re-serialised retry matches. */
export function fingerprintRequest(body: unknown): string {
  return sha256(canonicalJson(body));
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function createIdempotencyStore(
  table: TableClient,
  ready: () => Promise<void>,
  now: () => number = Date.now,
): IdempotencyStore {
  function claimOf(entity: KeyEntity, etag: string): IdempotencyClaim {
    let currentEtag = etag;
    return {
      kind: 'claimed',
      async complete(response) {
        const done: KeyEntity = {
          ...entity,
          state: 'done',
          responseStatus: response.status,
          responseBody: JSON.stringify(response.body),
          responseHeaders: JSON.stringify(response.headers),
        };
        // On 412 someone took the key over after our lease ran out; their outcome stands.
        const result = await withStorage(
          () => table.updateEntity(done, 'Replace', { etag: currentEtag }),
          [412],
        );
        if (result !== undefined) currentEtag = result.etag ?? currentEtag;
      },
      async release() {
        await withStorage(
          () => table.deleteEntity(entity.partitionKey, entity.rowKey, { etag: currentEtag }),
          [412, 404],
        );
      },
    };
  }

  async function tryInsert(entity: KeyEntity): Promise<IdempotencyClaim | undefined> {
    const result = await withStorage(() => table.createEntity(entity), [409]);
    return result === undefined ? undefined : claimOf(entity, result.etag ?? '*');
  }

  async function tryTakeOver(entity: KeyEntity, etag: string): Promise<IdempotencyClaim | undefined> {
    const result = await withStorage(() => table.updateEntity(entity, 'Replace', { etag }), [412, 404]);
    return result === undefined ? undefined : claimOf(entity, result.etag ?? '*');
  }

  return {
    async begin(scope, key, requestFingerprint) {
      await withStorage(ready);
      const partitionKey = sha256(`${scope}\n${key}`);
      const fresh = (): KeyEntity => ({
        partitionKey,
        rowKey: 'key',
        requestFingerprint,
        state: 'pending',
        createdAt: String(now()),
        leaseUntil: String(now() + IDEMPOTENCY_LEASE_MS),
      });
      // A lost race on insert is settled by reading the winner's row; a vanished row means try again.
      for (let round = 0; round < 3; round += 1) {
        const inserted = await tryInsert(fresh());
        if (inserted !== undefined) return inserted;
        const existing = await withStorage(() => table.getEntity<KeyEntity>(partitionKey, 'key'), [404]);
        if (existing === undefined) continue;
        if (Number(existing.createdAt) + IDEMPOTENCY_WINDOW_MS <= now()) {
          // Older than the window: the key is free again.
          const claim = await tryTakeOver(fresh(), existing.etag);
          if (claim !== undefined) return claim;
          continue;
        }
        if (existing.requestFingerprint !== requestFingerprint) throw keyReused();
        if (existing.state === 'done') {
          return {
            kind: 'replay',
            response: {
              status: existing.responseStatus ?? 200,
              body: JSON.parse(existing.responseBody ?? 'null') as unknown,
              headers: JSON.parse(existing.responseHeaders ?? '{}') as Record<string, string>,
            },
          };
        }
        if (Number(existing.leaseUntil) > now()) throw inProgress(Number(existing.leaseUntil) - now());
        const claim = await tryTakeOver({ ...fresh(), createdAt: existing.createdAt }, existing.etag);
        if (claim !== undefined) return claim;
      }
      throw inProgress(1000);
    },
  };
}

function keyReused(): RelayError {
  return new RelayError('idempotency_key_reused');
}

function inProgress(remainingMs: number): RelayError {
  return new RelayError('idempotency_request_in_progress', {
    retryAfterSeconds: Math.min(5, Math.max(1, Math.ceil(remainingMs / 1000))),
  });
}
