import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { authenticateCaller, callerKeyHeader } from '../shared/callers.ts';
import { publicStatus, sendNotFound } from '../shared/durable/sendStatus.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { withStorage } from '../shared/storage/storageErrors.ts';
import { withErrors } from './httpEdge.ts';

/** GET /api/send/{id}: where a queued message is (queued, sending, sent, failed), for the caller that sent it. */
export function createSendStatusHandler(runtime: () => Promise<Runtime>) {
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const { config, sendQueue, storage } = await runtime();
    const caller = authenticateCaller(request.headers.get(callerKeyHeader), config.callers);
    const id = request.params.id ?? '';
    if (!/^[0-9a-f-]{36}$/.test(id)) throw sendNotFound(id);
    await withStorage(() => storage.ready());
    const found = await sendQueue.statuses.get(caller.name, id);
    if (found === undefined) throw sendNotFound(id);
    return { status: 200, jsonBody: publicStatus(found.status) };
  });
}

export const sendStatus = createSendStatusHandler(runtimeFromEnvironment);

app.http('sendStatus', { route: 'send/{id}', methods: ['GET'], authLevel: 'function', handler: sendStatus });
