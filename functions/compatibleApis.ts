import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { callerKeyCarriers } from '../shared/api/callerKeyCarriers.ts';
import { type ApiRoute, httpRoutes, type RouteName, routePath } from '../shared/api/routes.ts';
import type { CompatibleApi, CompatibleRequest } from '../shared/compatible/compatibleApi.ts';
import { type ErrorBody, ensureRelayError } from '../shared/errors.ts';
import type { Runtime } from '../shared/runtime.ts';
import { errorResponse, logFailure, type RelayErrorResponse } from './httpEdge.ts';
import { type RelayHttpFunction, registerHttp } from './register.ts';

/**
 * The SendGrid, Resend, Postmark and Mailgun endpoints (shared/compatible/): each reads its provider's
 * request into /api/send bodies, runs them through the one send pipeline with the caller key from where the
 * provider's SDK carries its API key, and answers in the provider's shapes, failures included (a bad
 * setting too: an SDK cannot read the relay's error body).
 */
function compatibleSend(route: ApiRoute, api: CompatibleApi): RelayHttpFunction {
  const carrier = route.callerKey === false ? undefined : callerKeyCarriers[route.callerKey];
  return async (request: HttpRequest, runtime: Runtime, context: InvocationContext) => {
    // Only what the success answer repeats is kept from the request: not its bodies, during the send.
    let echo: CompatibleRequest['echo'];
    try {
      const responses = await runtime.submitSends({
        callerKey: carrier?.read(request.headers) ?? null,
        callerKeyCarriedIn: carrier?.carriedIn,
        idempotencyKey: request.headers.get('idempotency-key'),
        prefer: request.headers.get('prefer'),
        readBodies: async (maxBytes) => {
          const read = await api.read(request, maxBytes);
          echo = read.echo;
          return read;
        },
        statusUrl: (id) => new URL(routePath('sendStatus', { id }), request.url).toString(),
      });
      // A repeated Idempotency-Key replays the stored answer, which may be a refusal.
      const replayedRefusal = responses.find((response) => response.status >= 400);
      if (replayedRefusal !== undefined) {
        return refusedBy(api, { ...replayedRefusal, jsonBody: replayedRefusal.body as ErrorBody });
      }
      return api.accepted(responses, echo);
    } catch (caught) {
      return refusedBy(api, errorResponse(logFailure(request, context, caught), context.invocationId));
    }
  };
}

/** The relay's answer in the provider's error shape, its Retry-After kept as a header. */
function refusedBy(api: CompatibleApi, relay: RelayErrorResponse): HttpResponseInit {
  const response = api.refused({ status: relay.status, error: relay.jsonBody.error });
  const retryAfter = relay.headers['Retry-After'];
  if (retryAfter === undefined) return response;
  return { ...response, headers: { ...response.headers, 'Retry-After': retryAfter } };
}

for (const [name, route] of Object.entries(httpRoutes) as [RouteName, ApiRoute][]) {
  const api = route.compatibleApi;
  if (api === undefined) continue;
  registerHttp(name, compatibleSend(route, api), {
    onRuntimeError: (error, context) => {
      const relayError = ensureRelayError(error);
      context.warn(`${name}: the relay could not start: ${relayError.code}: ${relayError.message}`);
      return refusedBy(api, errorResponse(relayError, context.invocationId));
    },
  });
}
