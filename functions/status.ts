import { app, type HttpResponseInit } from '@azure/functions';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { withErrors } from './httpEdge.ts';

/** GET /api/status (admin key): every configured mailbox, its mode and sign-in health, and the credential's expiry. */
export function createStatusHandler(runtime: () => Promise<Runtime>) {
  return withErrors(async (): Promise<HttpResponseInit> => {
    const report = await (await runtime()).status();
    return { status: 200, jsonBody: report, headers: { 'cache-control': 'no-store' } };
  });
}

export const status = createStatusHandler(runtimeFromEnvironment);

app.http('status', { route: 'status', methods: ['GET'], authLevel: 'admin', handler: status });
