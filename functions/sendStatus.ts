import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { callerKeyHeader } from '../shared/callers.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** GET /api/send/{id}: where a queued message is (queued, sending, sent, failed), for the caller that sent it. */
export async function sendStatus(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const status = await runtime.queuedSendStatus(
    request.headers.get(callerKeyHeader),
    request.params.id ?? '',
  );
  return { status: 200, jsonBody: status };
}

registerHttp('sendStatus', sendStatus);
