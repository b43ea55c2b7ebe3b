import { authenticateCaller, type Caller } from '../callers.ts';
import { createConcurrencyGate } from '../concurrencyGate.ts';
import type { RelayConfig } from '../config.ts';
import { ensureRelayError, invalidRequest, RelayError, toErrorBody } from '../errors.ts';
import {
  fingerprintRequest,
  type IdempotencyStore,
  readIdempotencyKey,
  type StoredResponse,
} from '../idempotency/idempotencyStore.ts';
import { parseSendRequest, type SendRequest } from '../message.ts';
import { type AuthorizedMessage, authorizeMessage, type Relay } from '../relay.ts';
import type { SendQueue } from './sendQueue.ts';

/**
 * POST /api/send: authenticate the caller, validate the message, check the caller may use the sender, then
 * send now (the default) or queue (`Prefer: respond-async`), and with an Idempotency-Key, do either at most
 * once per key. Successes and permanent failures are remembered for the key; transient failures (nothing
 * was sent, a retry may succeed) give the key back.
 */
export interface SendSubmission {
  /** The caller's API key, as presented (x-relay-key, or where a compatible API's SDK carries its key). */
  callerKey: string | null;
  /** The Idempotency-Key header, as presented. */
  idempotencyKey: string | null;
  /** The Prefer header, as presented. */
  prefer: string | null;
  /** Reads and parses the body, refusing one over `maxBytes` with a 4xx. */
  readBody: (maxBytes: number) => Promise<unknown>;
  statusUrl: (id: string) => string;
}

/**
 * A request that carries several messages (a SendGrid request with several personalizations): each body is
 * a POST /api/send body. All are validated and their senders checked before the first is sent, so a bad one
 * sends nothing; they are then sent (or queued) one after another.
 */
export interface BatchSubmission extends Omit<SendSubmission, 'readBody'> {
  readBodies: (maxBytes: number) => Promise<BatchBodies>;
  /** Where the request carries its caller key, for the messages when it is missing or wrong. */
  callerKeyCarriedIn?: string;
}

export interface BatchBodies {
  bodies: readonly unknown[];
  /** The caller's own name for a field of message `index` (`to[0].address` -> `personalizations[1].to[0].email`). */
  fieldOf?: (index: number, field: string) => string;
}

export type SendSubmitter = (submission: SendSubmission) => Promise<SendResponse>;
export type BatchSubmitter = (submission: BatchSubmission) => Promise<SendResponse[]>;

export interface SendSubmitters {
  one: SendSubmitter;
  batch: BatchSubmitter;
}

export function createSendSubmitter(
  config: Pick<RelayConfig, 'callers' | 'limits'>,
  deps: SubmitDependencies,
): SendSubmitters {
  // Reading, parsing and decoding a body is CPU work on the one JavaScript thread. Done for many requests
  // interleaved, every request's body text, parsed JSON and base64 string would be alive at once (1.4 MB
  // each per 1 MB attachment); done two at a time, only the decoded attachment stays.
  const decoding = createConcurrencyGate(2);
  // JSON and base64 make the request larger than the encoded message; allow for both.
  const maxBodyBytes = Math.ceil(config.limits.maxMessageBytes * 1.5) + 65_536;
  const batch: BatchSubmitter = async (submission) => {
    const caller = authenticateCaller(submission.callerKey, config.callers, submission.callerKeyCarriedIn);
    const idempotencyKey = readIdempotencyKey(submission.idempotencyKey);
    const respondAsync = prefersAsync(submission.prefer);
    const options = { idempotencyKey, respondAsync, statusUrl: submission.statusUrl };
    const prepared = await decoding.run(async () => {
      const { bodies, fieldOf = (_index: number, field: string) => field } =
        await submission.readBodies(maxBodyBytes);
      if (idempotencyKey !== undefined && bodies.length > 1) {
        throw new RelayError('invalid_idempotency_key', {
          message: `An Idempotency-Key covers one message; this request holds ${bodies.length}.`,
          remedy: 'Send each message in its own request with its own key.',
        });
      }
      const prepare = (body: unknown, index: number): PreparedSend => {
        const message = parseRenamingFields(body, config.limits, (field) => fieldOf(index, field));
        return {
          authorized: authorizeInBatch(caller, message, index, fieldOf),
          payload: submitPayload(body, options),
        };
      };
      // Every message is validated and its sender checked before anything is sent: a bad last message
      // sends none. Only the first stays parsed and only the later ones' bodies stay in hand (a lone
      // message's JSON is not kept alive while it waits for SMTP); each later one is parsed again when its
      // turn comes, since the messages share the request's attachments and holding every decoded copy at
      // once would multiply the request's size by their number.
      const first = prepare(bodies[0], 0);
      const later = bodies.slice(1);
      for (const [offset, body] of later.entries()) prepare(body, offset + 1);
      return { first, later, prepare, fieldOf };
    });
    const responses = [await submitSend(deps, prepared.first.authorized, prepared.first.payload, options)];
    for (const [offset, body] of prepared.later.entries()) {
      const index = offset + 1;
      try {
        const { authorized, payload } = prepared.prepare(body, index);
        responses.push(await submitSend(deps, authorized, payload, options));
      } catch (caught) {
        throw partlySent(responses, index, ensureRelayError(caught), prepared.fieldOf);
      }
    }
    return responses;
  };
  // POST /api/send: a request of one message.
  const one: SendSubmitter = async (submission) => {
    const [response] = await batch({
      ...submission,
      readBodies: async (maxBytes) => ({ bodies: [await submission.readBody(maxBytes)] }),
    });
    if (response === undefined) throw new RelayError('internal_error');
    return response;
  };
  return { one, batch };
}

interface PreparedSend {
  authorized: AuthorizedMessage;
  payload: SubmitPayload;
}

/** The sender check of message `index`, naming that message's From field when it fails. */
function authorizeInBatch(
  caller: Caller,
  message: SendRequest,
  index: number,
  fieldOf: (index: number, field: string) => string,
): AuthorizedMessage {
  try {
    return authorizeMessage(caller, message);
  } catch (error) {
    if (!(error instanceof RelayError) || error.code !== 'sender_not_allowed') throw error;
    throw new RelayError('sender_not_allowed', {
      message: error.message,
      details: { ...error.details, field: fieldOf(index, 'from') },
    });
  }
}

function parseRenamingFields(
  body: unknown,
  limits: RelayConfig['limits'],
  rename: (field: string) => string,
): SendRequest {
  try {
    return parseSendRequest(body, limits);
  } catch (error) {
    if (!(error instanceof RelayError) || error.code !== 'invalid_request' || !Array.isArray(error.details))
      throw error;
    throw invalidRequest(error.details.map((problem) => ({ ...problem, field: rename(problem.field) })));
  }
}

/** After a send, no answer may say nothing was sent: the earlier messages went out and a retry repeats them. */
function partlySent(
  sent: SendResponse[],
  failedIndex: number,
  error: RelayError,
  fieldOf: (index: number, field: string) => string,
): RelayError {
  const messageIds = sent.map((response) => (response.body as { messageId?: string }).messageId ?? '');
  return new RelayError('partly_sent', {
    message: `${sent.length} of the request's messages ${sent.length === 1 ? 'was' : 'were'} sent (${messageIds.join(', ')}); ${fieldOf(failedIndex, '(message)')} was refused with ${error.code}: ${error.message} It and the ones after it were not sent.`,
    details: { sent: messageIds, failedIndex, failedCode: error.code },
  });
}

interface SubmitOptions {
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
function prefersAsync(prefer: string | null): boolean {
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
interface SubmitPayload {
  fingerprint: string | undefined;
  queuedBody: unknown;
}

function submitPayload(
  body: unknown,
  options: Pick<SubmitOptions, 'idempotencyKey' | 'respondAsync'>,
): SubmitPayload {
  return {
    fingerprint: options.idempotencyKey === undefined ? undefined : fingerprintRequest(body),
    queuedBody: options.respondAsync ? body : undefined,
  };
}

/** One authorized message: a sender the caller may not use never got this far, nor took a key or a queue slot. */
async function submitSend(
  deps: SubmitDependencies,
  authorized: AuthorizedMessage,
  payload: SubmitPayload,
  options: SubmitOptions,
): Promise<SendResponse> {
  const { caller } = authorized;

  async function run(): Promise<SendResponse> {
    if (options.respondAsync) {
      // Its start is reserved now, so the queue delivers it once, when it can go (not polled until then).
      const start = await deps.relay.schedule(authorized);
      const accepted = await deps.sendQueue.accept(caller.name, authorized.sender, payload.queuedBody, start);
      const statusUrl = options.statusUrl(accepted.id);
      return {
        status: 202,
        body: { id: accepted.id, state: 'queued', messageId: accepted.messageId, statusUrl },
        headers: { Location: statusUrl, 'Preference-Applied': 'respond-async' },
      };
    }
    const result = await deps.relay.send(authorized);
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
