import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** DELETE /api/mailboxes/{address}/connection (admin key): stop using a delegated mailbox's sign-in. */
export async function disconnectMailbox(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const disconnected = await runtime.disconnect(request.params.address ?? '');
  return { status: 200, jsonBody: disconnected, headers: { 'cache-control': 'no-store' } };
}

registerHttp('disconnectMailbox', disconnectMailbox);
