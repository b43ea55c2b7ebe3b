import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { authenticateCaller, callerKeyHeader } from '../shared/callers.ts';
import { createConcurrencyGate } from '../shared/concurrencyGate.ts';
import { parseSendRequest } from '../shared/message.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { readJsonBody, withErrors } from './httpEdge.ts';

/** POST /api/send: authenticate the caller, validate the message, relay it, answer with the SMTP outcome. */
export function createSendHandler(runtime: () => Promise<Runtime>) {
  // Reading, parsing and decoding a body is CPU work on the one JavaScript thread. Done for many requests
  // interleaved, every request's body text, parsed JSON and base64 string would be alive at once (1.4 MB
  // each per 1 MB attachment); done two at a time, only the decoded attachment stays.
  const decoding = createConcurrencyGate(2);
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const { config, relay } = await runtime();
    const caller = authenticateCaller(request.headers.get(callerKeyHeader), config.callers);
    const message = await decoding.run(async () => {
      // JSON and base64 make the request larger than the encoded message; allow for both.
      const body = await readJsonBody(request, Math.ceil(config.limits.maxMessageBytes * 1.5) + 65_536);
      return parseSendRequest(body, config.limits);
    });
    const result = await relay.send(caller, message);
    return { status: 200, jsonBody: result };
  });
}

export const send = createSendHandler(runtimeFromEnvironment);

app.http('send', { route: 'send', methods: ['POST'], authLevel: 'function', handler: send });
