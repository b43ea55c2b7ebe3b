import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { authenticateCaller, callerKeyHeader } from '../shared/callers.ts';
import { createConcurrencyGate } from '../shared/concurrencyGate.ts';
import { prefersAsync, submitPayload, submitSend } from '../shared/durable/submitSend.ts';
import { readIdempotencyKey } from '../shared/idempotency/idempotencyStore.ts';
import { parseSendRequest } from '../shared/message.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { readJsonBody, withErrors } from './httpEdge.ts';

/**
 * POST /api/send: authenticate the caller, validate the message, then send it now and answer with the SMTP
 * outcome, or with `Prefer: respond-async` queue it and answer 202. `Idempotency-Key` makes either safe to
 * repeat.
 */
export function createSendHandler(runtime: () => Promise<Runtime>) {
  // Reading, parsing and decoding a body is CPU work on the one JavaScript thread. Done for many requests
  // interleaved, every request's body text, parsed JSON and base64 string would be alive at once (1.4 MB
  // each per 1 MB attachment); done two at a time, only the decoded attachment stays.
  const decoding = createConcurrencyGate(2);
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const relayRuntime = await runtime();
    const { config } = relayRuntime;
    const caller = authenticateCaller(request.headers.get(callerKeyHeader), config.callers);
    const idempotencyKey = readIdempotencyKey(request.headers.get('idempotency-key'));
    const respondAsync = prefersAsync(request.headers.get('prefer'));
    const { message, payload } = await decoding.run(async () => {
      // JSON and base64 make the request larger than the encoded message; allow for both.
      const body = await readJsonBody(request, Math.ceil(config.limits.maxMessageBytes * 1.5) + 65_536);
      return {
        message: parseSendRequest(body, config.limits),
        payload: submitPayload(body, { idempotencyKey, respondAsync }),
      };
    });
    const response = await submitSend(relayRuntime, caller, message, payload, {
      idempotencyKey,
      respondAsync,
      statusUrl: (id) => new URL(`/api/send/${id}`, request.url).toString(),
    });
    return { status: response.status, jsonBody: response.body, headers: response.headers };
  });
}

export const send = createSendHandler(runtimeFromEnvironment);

app.http('send', { route: 'send', methods: ['POST'], authLevel: 'function', handler: send });
