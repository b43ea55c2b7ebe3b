import { jsonBodyLimit } from '../api/requestBody.ts';
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
import { bodyFingerprint } from '../rawMime/bodyFingerprint.ts';
import { messageTooLarge, openRawMessage, type RawMessage } from '../rawMime/rawMessage.ts';
import { type AuthorizedMessage, authorizeMessage, authorizeRawMessage, type Relay } from '../relay.ts';
import type { SendQueue, SpilledMessage } from './sendQueue.ts';

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

/**
 * POST /api/send with `Content-Type: message/rfc822`: the message as raw MIME, read from the request as it
 * arrives. Its header section is read and checked and its From authorized before any SMTP byte; without
 * Prefer or Idempotency-Key the body then streams from the request into SMTP DATA.
 */
export interface RawSendSubmission extends Omit<SendSubmission, 'readBody'> {
  /** The Content-Length header, as presented (a chunked request has none). */
  contentLength: string | null;
  body: AsyncIterable<Uint8Array> | null;
}

export type SendSubmitter = (submission: SendSubmission) => Promise<SendResponse>;
export type BatchSubmitter = (submission: BatchSubmission) => Promise<SendResponse[]>;
export type RawSendSubmitter = (submission: RawSendSubmission) => Promise<SendResponse>;

export interface SendSubmitters {
  one: SendSubmitter;
  batch: BatchSubmitter;
  raw: RawSendSubmitter;
}

export function createSendSubmitter(
  config: Pick<RelayConfig, 'callers' | 'limits'>,
  deps: SubmitDependencies,
): SendSubmitters {
  // Reading, parsing and decoding a body is CPU work on the one JavaScript thread. Done for many requests
  // interleaved, every request's body text, parsed JSON and base64 string would be alive at once (1.4 MB
  // each per 1 MB attachment); done two at a time, only the decoded attachment stays.
  const decoding = createConcurrencyGate(2);
  const maxBodyBytes = jsonBodyLimit(config.limits.maxMessageBytes);
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
  const raw: RawSendSubmitter = async (submission) => {
    const caller = authenticateCaller(submission.callerKey, config.callers);
    const idempotencyKey = readIdempotencyKey(submission.idempotencyKey);
    const respondAsync = prefersAsync(submission.prefer);
    const { maxMessageBytes } = config.limits;
    // Refused before a byte is read; a chunked body is counted as it streams.
    if (Number(submission.contentLength ?? '0') > maxMessageBytes) throw messageTooLarge(maxMessageBytes);
    const fingerprint = idempotencyKey === undefined ? undefined : bodyFingerprint(submission.body ?? []);
    const message = await openRawMessage(fingerprint?.body ?? submission.body ?? [], config.limits);
    let authorized: AuthorizedMessage;
    try {
      authorized = authorizeRawMessage(caller, message);
    } catch (error) {
      message.discard();
      throw error;
    }
    if (idempotencyKey === undefined && !respondAsync) {
      try {
        return await sendNow(deps.relay, authorized);
      } finally {
        // A send refused before DATA (a limit, a token) leaves the rest of the body unread: let it go.
        message.discard();
      }
    }
    // Held in a blob while the key is checked or the message waits in the queue, never in memory; spilled
    // to its end before the key is taken, since only then is the body's fingerprint known.
    let spilled: SpilledMessage;
    try {
      spilled = await deps.sendQueue.spillRaw(message);
    } catch (error) {
      message.discard();
      throw error;
    }
    let queued = false;
    try {
      return await withIdempotency(deps, caller.name, idempotencyKey, fingerprint?.digest(), async () => {
        if (!respondAsync) return sendSpilled(deps, authorized, spilled, config.limits);
        const response = await queueRaw(deps, authorized, spilled, submission.statusUrl);
        queued = true;
        return response;
      });
    } finally {
      // A queued message's blob is its job's now; every other outcome (sent, refused, replayed) is done with it.
      if (!queued) await deps.sendQueue.removeSpilled(spilled.blobName).catch(() => undefined);
    }
  };
  return { one, batch, raw };
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
      return accepted202(accepted, options.statusUrl);
    }
    return sendNow(deps.relay, authorized);
  }

  return withIdempotency(deps, caller.name, options.idempotencyKey, payload.fingerprint, run);
}

/**
 * With an Idempotency-Key, `run` at most once per key and body: a repeat gets the remembered answer.
 * Successes and permanent failures are remembered; transient failures give the key back.
 */
async function withIdempotency(
  deps: SubmitDependencies,
  callerName: string,
  idempotencyKey: string | undefined,
  fingerprint: string | undefined,
  run: () => Promise<SendResponse>,
): Promise<SendResponse> {
  if (idempotencyKey === undefined || fingerprint === undefined) return run();
  const begin = await deps.idempotency.begin(callerName, idempotencyKey, fingerprint);
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

async function sendNow(relay: Relay, authorized: AuthorizedMessage): Promise<SendResponse> {
  const result = await relay.send(authorized);
  return { status: 200, body: result, headers: {} };
}

/** A spilled raw message sent now: streamed from its blob, its header section checked again on the way. */
async function sendSpilled(
  deps: SubmitDependencies,
  authorized: AuthorizedMessage,
  spilled: SpilledMessage,
  limits: RelayConfig['limits'],
): Promise<SendResponse> {
  const raw: RawMessage = await openRawMessage(
    await deps.sendQueue.readRaw(spilled.blobName),
    limits,
    'stored',
  );
  try {
    return await sendNow(deps.relay, { caller: authorized.caller, sender: authorized.sender, raw });
  } finally {
    raw.discard();
  }
}

async function queueRaw(
  deps: SubmitDependencies,
  authorized: AuthorizedMessage,
  spilled: SpilledMessage,
  statusUrlOf: (id: string) => string,
): Promise<SendResponse> {
  const start = await deps.relay.schedule(authorized);
  const accepted = await deps.sendQueue.acceptRaw(authorized.caller.name, authorized.sender, spilled, start);
  return accepted202(accepted, statusUrlOf);
}

function accepted202(accepted: { id: string; messageId: string }, statusUrlOf: (id: string) => string) {
  const statusUrl = statusUrlOf(accepted.id);
  return {
    status: 202,
    body: { id: accepted.id, state: 'queued', messageId: accepted.messageId, statusUrl },
    headers: { Location: statusUrl, 'Preference-Applied': 'respond-async' },
  };
}

function storedError(error: RelayError): SendResponse {
  return {
    status: error.status,
    body: toErrorBody(error),
    headers: error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(error.retryAfterSeconds) },
  };
}
