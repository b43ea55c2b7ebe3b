import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { authenticateCaller, callerKeyHeader } from '../shared/callers.ts';
import { parseSendRequest } from '../shared/message.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { readJsonBody, withErrors } from './httpEdge.ts';

/** POST /api/send: authenticate the caller, validate the message, relay it, answer with the SMTP outcome. */
export function createSendHandler(runtime: () => Promise<Runtime>) {
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const { config, relay } = await runtime();
    const caller = authenticateCaller(request.headers.get(callerKeyHeader), config.callers);
    // JSON and base64 make the request larger than the encoded message; allow for both.
    const body = await readJsonBody(request, Math.ceil(config.limits.maxMessageBytes * 1.5) + 65_536);
    const message = parseSendRequest(body, config.limits);
    const result = await relay.send(caller, message);
    return { status: 200, jsonBody: result };
  });
}

export const send = createSendHandler(runtimeFromEnvironment);

app.http('send', { route: 'send', methods: ['POST'], authLevel: 'function', handler: send });
