import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { callerKeyCarriers } from '../shared/api/callerKeyCarriers.ts';
import { type ApiRoute, httpRoutes, type RouteName, routePath } from '../shared/api/routes.ts';
import type { CompatibleApi, CompatibleRequest } from '../shared/compatible/compatibleApi.ts';
import { ensureRelayError, type RelayError, toErrorBody } from '../shared/errors.ts';
import type { Runtime } from '../shared/runtime.ts';
import { logFailure } from './httpEdge.ts';
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
        const retryAfter = replayedRefusal.headers['Retry-After'];
        return api.refused({
          status: replayedRefusal.status,
          error: (replayedRefusal.body as ReturnType<typeof toErrorBody>).error,
          retryAfterSeconds: retryAfter === undefined ? undefined : Number(retryAfter),
        });
      }
      return api.accepted(responses, echo);
    } catch (caught) {
      return refusedBy(api, logFailure(request, context, caught), context);
    }
  };
}

function refusedBy(api: CompatibleApi, error: RelayError, context: InvocationContext): HttpResponseInit {
  const body = toErrorBody(error);
  if (error.code === 'internal_error') body.error.details = { requestId: context.invocationId };
  const response = api.refused({
    status: error.status,
    error: body.error,
    retryAfterSeconds: error.retryAfterSeconds,
  });
  if (error.retryAfterSeconds === undefined) return response;
  return { ...response, headers: { ...response.headers, 'Retry-After': String(error.retryAfterSeconds) } };
}

for (const [name, route] of Object.entries(httpRoutes) as [RouteName, ApiRoute][]) {
  const api = route.compatibleApi;
  if (api === undefined) continue;
  registerHttp(name, compatibleSend(route, api), {
    onRuntimeError: (error, context) => {
      const relayError = ensureRelayError(error);
      context.warn(`${name}: the relay could not start: ${relayError.code}: ${relayError.message}`);
      return refusedBy(api, relayError, context);
    },
  });
}
