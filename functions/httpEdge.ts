import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { ensureRelayError, RelayError, toErrorBody } from '../shared/errors.ts';
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
      const relayError = ensureRelayError(error);
      if (relayError === error) {
        const log = relayError.status >= 500 ? context.warn.bind(context) : context.log.bind(context);
        log(
          `${request.method} ${new URL(request.url).pathname} -> ${relayError.status} ${relayError.code}: ${relayError.message}`,
        );
      } else {
        const name = error instanceof Error ? error.name : typeof error;
        const message = error instanceof Error ? redactSecrets(error.message) : '';
        context.error(
          `${request.method} ${new URL(request.url).pathname} failed unexpectedly: ${name}: ${message}`,
        );
      }
      return errorResponse(relayError, context.invocationId);
    }
  };
}

export function errorResponse(error: RelayError, requestId?: string): HttpResponseInit {
  const body = toErrorBody(error);
  if (error.code === 'internal_error' && requestId !== undefined) body.error.details = { requestId };
  return {
    status: error.status,
    jsonBody: body,
    headers: error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(error.retryAfterSeconds) },
  };
}

/** Reads a JSON body, refusing other content types, bodies over `maxBytes`, and malformed JSON with a 4xx. */
export async function readJsonBody(
  request: HttpRequest,
  maxBytes: number,
  options: { emptyAs?: unknown } = {},
): Promise<unknown> {
  const contentType = request.headers.get('content-type');
  if (contentType !== null && !/^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType)) {
    throw new RelayError('unsupported_media_type', {
      message: `The body must be JSON (Content-Type: application/json), not ${contentType.slice(0, 100)}.`,
    });
  }
  const declaredLength = Number(request.headers.get('content-length') ?? '0');
  if (declaredLength > maxBytes) throw bodyTooLarge(maxBytes);
  const text = await request.text();
  if (Buffer.byteLength(text) > maxBytes) throw bodyTooLarge(maxBytes);
  if (text.trim() === '') {
    if ('emptyAs' in options) return options.emptyAs;
    throw new RelayError('invalid_json', {
      message: 'The request body is empty; send a JSON object.',
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new RelayError('invalid_json', {
      message: `The request body is not valid JSON: ${error instanceof Error ? error.message.slice(0, 200) : 'parse error'}.`,
    });
  }
}

function bodyTooLarge(maxBytes: number): RelayError {
  return new RelayError('request_too_large', {
    message: `The request body is larger than ${maxBytes} bytes.`,
  });
}
