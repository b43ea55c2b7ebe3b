import { authorizeSender, type Caller } from '../callers.ts';
import { ensureRelayError, type RelayError, toErrorBody } from '../errors.ts';
import {
  fingerprintRequest,
  type IdempotencyStore,
  type StoredResponse,
} from '../idempotency/idempotencyStore.ts';
import { type SendRequest, senderMailbox } from '../message.ts';
import type { Relay } from '../relay.ts';
import type { SendQueue } from './sendQueue.ts';

/**
 * POST /api/send after validation: send now (the default) or queue (`Prefer: respond-async`), and with an
 * Idempotency-Key, do either at most once per key. Successes and permanent failures are remembered for the
 * key; transient failures (nothing was sent, a retry may succeed) give the key back.
 */
export interface SubmitOptions {
  idempotencyKey: string | undefined;
  respondAsync: boolean;
  statusUrl: (id: string) => string;
}

export interface SubmitDependencies {
  relay: Relay;
  sendQueue: SendQueue;
  idempotency: IdempotencyStore;
}

export type SendResponse = StoredResponse;

/** RFC 7240: `Prefer: respond-async` (possibly among other preferences such as `wait=10`). */
export function prefersAsync(prefer: string | null): boolean {
  if (prefer === null) return false;
  return prefer
    .split(/[,;]/)
    .map((token) => token.trim().toLowerCase())
    .includes('respond-async');
}

/**
 * What the request body is still needed for after parsing: its fingerprint (idempotency) and, for a queued
 * send, the body itself. Taken out while the body is in hand, so a synchronous send does not keep a
 * request's JSON (with its base64 attachments) alive while it waits for SMTP.
 */
export interface SubmitPayload {
  fingerprint: string | undefined;
  queuedBody: unknown;
}

export function submitPayload(
  body: unknown,
  options: Pick<SubmitOptions, 'idempotencyKey' | 'respondAsync'>,
): SubmitPayload {
  return {
    fingerprint: options.idempotencyKey === undefined ? undefined : fingerprintRequest(body),
    queuedBody: options.respondAsync ? body : undefined,
  };
}

export async function submitSend(
  deps: SubmitDependencies,
  caller: Caller,
  request: SendRequest,
  payload: SubmitPayload,
  options: SubmitOptions,
): Promise<SendResponse> {
  const sender = senderMailbox(request);
  // A sender the caller may not use never takes a key or a queue slot.
  authorizeSender(caller, sender);

  async function run(): Promise<SendResponse> {
    if (options.respondAsync) {
      const accepted = await deps.sendQueue.accept(caller.name, sender, payload.queuedBody);
      const statusUrl = options.statusUrl(accepted.id);
      return {
        status: 202,
        body: { id: accepted.id, state: 'queued', messageId: accepted.messageId, statusUrl },
        headers: { Location: statusUrl, 'Preference-Applied': 'respond-async' },
      };
    }
    const result = await deps.relay.send(caller, request);
    return { status: 200, body: result, headers: {} };
  }

  if (options.idempotencyKey === undefined || payload.fingerprint === undefined) return run();
  const begin = await deps.idempotency.begin(caller.name, options.idempotencyKey, payload.fingerprint);
  if (begin.kind === 'replay') {
    return { ...begin.response, headers: { ...begin.response.headers, 'Idempotent-Replayed': 'true' } };
  }
  let response: SendResponse;
  try {
    response = await run();
  } catch (caught) {
    const error = ensureRelayError(caught);
    if (error.transient || error.code === 'internal_error') await begin.release();
    else await begin.complete(storedError(error));
    throw error;
  }
  await begin.complete(response);
  return response;
}

function storedError(error: RelayError): SendResponse {
  return {
    status: error.status,
    body: toErrorBody(error),
    headers: error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(error.retryAfterSeconds) },
  };
}
