import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { readJsonBody } from '../shared/api/requestBody.ts';
import { routePath } from '../shared/api/routes.ts';
import { callerKeyHeader } from '../shared/callers.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/**
 * POST /api/send: send one message now and answer with Exchange's outcome, or with `Prefer: respond-async`
 * queue it and answer 202. `Idempotency-Key` makes either safe to repeat (shared/durable/submitSend.ts). The
 * body is the JSON send request, or with `Content-Type: message/rfc822` the message itself as raw MIME.
 */
export async function send(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const submission = {
    callerKey: request.headers.get(callerKeyHeader),
    idempotencyKey: request.headers.get('idempotency-key'),
    prefer: request.headers.get('prefer'),
    statusUrl: (id: string) => new URL(routePath('sendStatus', { id }), request.url).toString(),
  };
  // A raw MIME message streams from the request body to SMTP (the app runs in HTTP streaming mode).
  const response = isRawMime(request.headers.get('content-type'))
    ? await runtime.submitRawSend({
        ...submission,
        contentLength: request.headers.get('content-length'),
        body: request.body,
      })
    : await runtime.submitSend({ ...submission, readBody: (maxBytes) => readJsonBody(request, maxBytes) });
  return { status: response.status, jsonBody: response.body, headers: response.headers };
}

const isRawMime = (contentType: string | null) =>
  contentType !== null && /^message\/rfc822\s*(;|$)/i.test(contentType.trim());

registerHttp('send', send);
