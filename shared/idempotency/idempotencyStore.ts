import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { deflateRaw, inflateRaw } from 'node:zlib';
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
 *
 * A stored answer can be far larger than one Table property holds (64 KiB; Azure and Azurite refuse more):
 * 500 recipients of 320-character addresses are listed in the answer. It is kept compressed, split over
 * binary properties of one row (an entity holds at most 1 MiB), which fits every answer the relay makes
 * (1,000 recipients of 320 three-byte characters are 0.96 MB before compression). Once a send went out no
 * answer may say nothing was sent, so storing never fails the request: an answer that cannot be stored
 * whole is kept in part (its small fields), and if nothing can be stored the failure is logged and the
 * caller still gets the send's answer.
 */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;
/** How long an unfinished request owns its key; after that a retry may take over (its process died). */
export const IDEMPOTENCY_LEASE_MS = 5 * 60 * 1000;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;

/** Azure Table storage: a binary property holds at most 64 KiB, an entity at most 1 MiB. */
const ANSWER_PART_BYTES = 64 * 1024;
const MAX_ANSWER_PARTS = 15;
/** A field of an answer kept in part: larger ones (the recipient lists) are left out. */
const MAX_PARTIAL_FIELD_CHARS = 2048;
/** Names the fields of an answer that were too large to keep, on the replay of an answer kept in part. */
export const OMITTED_FIELDS_HEADER = 'Idempotent-Answer-Omitted';

/** Waits between the attempts to record an answer after its send went out, whatever storage does. */
const STORE_RETRY_DELAYS_MS = [0, 250, 1000];

const deflate = promisify(deflateRaw);
const inflate = promisify(inflateRaw);

export interface StoredResponse {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

export interface IdempotencyClaim {
  kind: 'claimed';
  /**
   * Stores the response for later repeats. Never rejects: it comes after the send, whose answer the caller
   * must get whatever storage does (a failure is logged).
   */
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
  /** How many `answerN` properties hold the compressed answer (status, body and headers as JSON). */
  answerParts?: number;
  [answerPart: `answer${number}`]: Uint8Array;
  // Rows written before answers were split kept them as text; read for the rest of their window.
  responseBody?: string;
  responseHeaders?: string;
}

async function answerProperties(response: StoredResponse): Promise<Partial<KeyEntity> | undefined> {
  const packed = await deflate(Buffer.from(JSON.stringify(response), 'utf8'));
  const parts = Math.ceil(packed.length / ANSWER_PART_BYTES);
  if (parts > MAX_ANSWER_PARTS) return undefined;
  const properties: Partial<KeyEntity> = { responseStatus: response.status, answerParts: parts };
  for (let part = 0; part < parts; part += 1) {
    properties[`answer${part}`] = packed.subarray(part * ANSWER_PART_BYTES, (part + 1) * ANSWER_PART_BYTES);
  }
  return properties;
}

async function storedAnswer(entity: KeyEntity): Promise<StoredResponse> {
  if (entity.answerParts === undefined) {
    return {
      status: entity.responseStatus ?? 200,
      body: JSON.parse(entity.responseBody ?? 'null') as unknown,
      headers: JSON.parse(entity.responseHeaders ?? '{}') as Record<string, string>,
    };
  }
  const parts = Array.from({ length: entity.answerParts }, (_, part) => entity[`answer${part}`]);
  if (parts.some((part) => part === undefined)) throw new RelayError('internal_error');
  const json = await inflate(Buffer.concat(parts as Uint8Array[]));
  return JSON.parse(json.toString('utf8')) as StoredResponse;
}

/**
 * What is kept of an answer too large to store (none the relay makes today): its status, headers and small
 * top-level fields (a send's messageId, sender, response), so a retry still learns the message went out.
 */
function partialAnswer(response: StoredResponse): StoredResponse {
  const body = response.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ...response, body: null, headers: { ...response.headers, [OMITTED_FIELDS_HEADER]: '(body)' } };
  }
  const kept: Record<string, unknown> = {};
  const omitted: string[] = [];
  for (const [field, value] of Object.entries(body)) {
    if ((JSON.stringify(value) ?? '').length <= MAX_PARTIAL_FIELD_CHARS) kept[field] = value;
    else omitted.push(field);
  }
  return {
    ...response,
    body: kept,
    headers: { ...response.headers, [OMITTED_FIELDS_HEADER]: omitted.join(', ') },
  };
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
  /** Where a failure to store an answer is logged (never the answer itself). */
  log: (line: string) => void = () => undefined,
): IdempotencyStore {
  function claimOf(scope: string, entity: KeyEntity, etag: string): IdempotencyClaim {
    let currentEtag = etag;
    /** Replaces the pending row with a finished one; false when storage refused it. */
    async function storeDone(answer: Partial<KeyEntity>, what: string): Promise<boolean> {
      const done: KeyEntity = { ...entity, ...answer, state: 'done' };
      try {
        const result = await table.updateEntity(done, 'Replace', { etag: currentEtag });
        currentEtag = result.etag ?? currentEtag;
        return true;
      } catch (caught) {
        const { statusCode, code } = (caught ?? {}) as { statusCode?: unknown; code?: unknown };
        // On 412 someone took the key over after our lease ran out (or our own earlier write arrived after
        // all); that outcome stands.
        if (statusCode === 412) return true;
        log(
          `Idempotency key ${entity.partitionKey} of caller ${scope}: could not store ${what} (${typeof statusCode === 'number' ? `HTTP ${statusCode}` : 'no answer'}${typeof code === 'string' ? ` ${code}` : ''}).`,
        );
        return false;
      }
    }
    return {
      kind: 'claimed',
      async complete(response) {
        let answer = await answerProperties(response);
        if (answer === undefined) {
          log(
            `Idempotency key ${entity.partitionKey} of caller ${scope}: the ${response.status} answer is too large to store whole; keeping its small fields.`,
          );
          answer = await answerProperties(partialAnswer(response));
        }
        // A row left pending lets a repeat after the lease send again, so a short outage is waited out.
        for (const [attempt, delayMs] of STORE_RETRY_DELAYS_MS.entries()) {
          if (answer === undefined) break;
          await delay(delayMs);
          if (await storeDone(answer, `the ${response.status} answer (attempt ${attempt + 1})`)) return;
        }
        log(
          `Idempotency key ${entity.partitionKey} of caller ${scope}: nothing of the answer was stored; the key stays pending, so a repeat after ${IDEMPOTENCY_LEASE_MS / 60_000} minutes may send the message again.`,
        );
      },
      async release() {
        await withStorage(
          () => table.deleteEntity(entity.partitionKey, entity.rowKey, { etag: currentEtag }),
          [412, 404],
        );
      },
    };
  }

  async function tryInsert(scope: string, entity: KeyEntity): Promise<IdempotencyClaim | undefined> {
    const result = await withStorage(() => table.createEntity(entity), [409]);
    return result === undefined ? undefined : claimOf(scope, entity, result.etag ?? '*');
  }

  async function tryTakeOver(
    scope: string,
    entity: KeyEntity,
    etag: string,
  ): Promise<IdempotencyClaim | undefined> {
    const result = await withStorage(() => table.updateEntity(entity, 'Replace', { etag }), [412, 404]);
    return result === undefined ? undefined : claimOf(scope, entity, result.etag ?? '*');
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
        const inserted = await tryInsert(scope, fresh());
        if (inserted !== undefined) return inserted;
        const existing = await withStorage(() => table.getEntity<KeyEntity>(partitionKey, 'key'), [404]);
        if (existing === undefined) continue;
        if (Number(existing.createdAt) + IDEMPOTENCY_WINDOW_MS <= now()) {
          // Older than the window: the key is free again.
          const claim = await tryTakeOver(scope, fresh(), existing.etag);
          if (claim !== undefined) return claim;
          continue;
        }
        if (existing.requestFingerprint !== requestFingerprint) throw keyReused();
        if (existing.state === 'done') {
          return { kind: 'replay', response: await storedAnswer(existing) };
        }
        if (Number(existing.leaseUntil) > now()) throw inProgress(Number(existing.leaseUntil) - now());
        const claim = await tryTakeOver(scope, { ...fresh(), createdAt: existing.createdAt }, existing.etag);
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
