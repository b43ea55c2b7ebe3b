import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { authenticateCaller, callerKeyHeader } from '../shared/callers.ts';
import { prefersAsync, submitSend } from '../shared/durable/submitSend.ts';
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
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const relayRuntime = await runtime();
    const { config } = relayRuntime;
    const caller = authenticateCaller(request.headers.get(callerKeyHeader), config.callers);
    const idempotencyKey = readIdempotencyKey(request.headers.get('idempotency-key'));
    // JSON and base64 make the request larger than the encoded message; allow for both.
    const body = await readJsonBody(request, Math.ceil(config.limits.maxMessageBytes * 1.5) + 65_536);
    const message = parseSendRequest(body, config.limits);
    const response = await submitSend(relayRuntime, caller, message, body, {
      idempotencyKey,
      respondAsync: prefersAsync(request.headers.get('prefer')),
      statusUrl: (id) => new URL(`/api/send/${id}`, request.url).toString(),
    });
    return { status: response.status, jsonBody: response.body, headers: response.headers };
  });
}

export const send = createSendHandler(runtimeFromEnvironment);

app.http('send', { route: 'send', methods: ['POST'], authLevel: 'function', handler: send });
