import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { readJsonBody } from '../shared/api/requestBody.ts';
import { routePath } from '../shared/api/routes.ts';
import { callerKeyHeader } from '../shared/callers.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/**
 * POST /api/send: send one message now and answer with Exchange's outcome, or with `Prefer: respond-async`
 * queue it and answer 202. `Idempotency-Key` makes either safe to repeat (shared/durable/submitSend.ts).
 */
export async function send(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const response = await runtime.submitSend({
    callerKey: request.headers.get(callerKeyHeader),
    idempotencyKey: request.headers.get('idempotency-key'),
    prefer: request.headers.get('prefer'),
    readBody: (maxBytes) => readJsonBody(request, maxBytes),
    statusUrl: (id) => new URL(routePath('sendStatus', { id }), request.url).toString(),
  });
  return { status: response.status, jsonBody: response.body, headers: response.headers };
}

registerHttp('send', send);
