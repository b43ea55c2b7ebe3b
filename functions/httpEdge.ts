import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { type ErrorBody, ensureRelayError, type RelayError, toErrorBody } from '../shared/errors.ts';
import { redactSecrets } from '../shared/redact.ts';

/**
 * The HTTP edge shared by every function: RelayErrors become their JSON body, status and Retry-After;
 * anything else is logged (redacted) and answered with a bare 500. Request bodies are never logged.
 */
export type RelayHttpHandler = (
  request: HttpRequest,
  context: InvocationContext,
) => Promise<HttpResponseInit>;

export function withErrors(handler: RelayHttpHandler): RelayHttpHandler {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    try {
      return await handler(request, context);
    } catch (error) {
      return errorResponse(logFailure(request, context, error), context.invocationId);
    }
  };
}

/**
 * Logs a failed request as the edge does and returns the RelayError to answer with: a RelayError by its code
 * and message (which never hold a secret or a body), anything else redacted, as an internal error.
 */
export function logFailure(request: HttpRequest, context: InvocationContext, error: unknown): RelayError {
  const relayError = ensureRelayError(error);
  const path = new URL(request.url).pathname;
  if (relayError === error) {
    const log = relayError.status >= 500 ? context.warn.bind(context) : context.log.bind(context);
    log(`${request.method} ${path} -> ${relayError.status} ${relayError.code}: ${relayError.message}`);
  } else {
    const name = error instanceof Error ? error.name : typeof error;
    const message = error instanceof Error ? redactSecrets(error.message) : '';
    context.error(`${request.method} ${path} failed unexpectedly: ${name}: ${message}`);
  }
  return relayError;
}

/** A RelayError as the relay answers it: its body (with the request id for an internal error), status and Retry-After. */
export interface RelayErrorResponse {
  status: number;
  jsonBody: ErrorBody;
  headers: Record<string, string>;
}

export function errorResponse(error: RelayError, requestId?: string): RelayErrorResponse {
  const body = toErrorBody(error);
  if (error.code === 'internal_error' && requestId !== undefined) body.error.details = { requestId };
  return {
    status: error.status,
    jsonBody: body,
    headers: error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(error.retryAfterSeconds) },
  };
}
