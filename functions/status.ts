import type { HttpResponseInit } from '@azure/functions';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** GET /api/status (admin key): every configured mailbox, its mode and sign-in health, and the credential's expiry. */
export async function status(_request: unknown, runtime: Runtime): Promise<HttpResponseInit> {
  return { status: 200, jsonBody: await runtime.status(), headers: { 'cache-control': 'no-store' } };
}

registerHttp('status', status);
