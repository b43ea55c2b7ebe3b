import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** POST /api/admin/poisoned/{id}/retry (admin key): send a poisoned message again after fixing its cause. */
export async function retryPoisoned(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const retried = await runtime.queueAdmin.retryPoisoned(request.params.id ?? '');
  return { status: 200, jsonBody: retried, headers: { 'cache-control': 'no-store' } };
}

registerHttp('retryPoisoned', retryPoisoned);
