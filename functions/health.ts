import type { HttpResponseInit } from '@azure/functions';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** GET /api/health (function key): 200 when mail can flow, 503 with the problems and what to do. */
export async function health(_request: unknown, runtime: Runtime): Promise<HttpResponseInit> {
  const report = await runtime.health();
  return { status: report.healthy ? 200 : 503, jsonBody: report, headers: { 'cache-control': 'no-store' } };
}

registerHttp('health', health);
