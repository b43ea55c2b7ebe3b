import type { z } from 'zod';
import type { BodyStreamSource } from '../api/requestBody.ts';
import type { BatchBodies, SendResponse } from '../durable/submitSend.ts';
import type { ErrorBody } from '../errors.ts';

/**
 * An email API the relay answers in the provider's own shapes (SendGrid, Resend, Postmark, Mailgun), so an
 * app that already uses the provider's SDK changes only its base URL and key. An API is only a translation:
 * it reads the provider's request into POST /api/send bodies, and writes the relay's answer back as the
 * provider's response or error. Everything in between (caller key, validation, sender check, limits,
 * idempotency, the durable queue, the error table) is the one send pipeline's (shared/durable/submitSend.ts),
 * run by `compatibleSend` (shared/compatible/compatibleSend.ts).
 */
export interface CompatibleRequest extends BatchBodies {
  /** One POST /api/send body per message the request asks for. */
  bodies: readonly unknown[];
  /**
   * The provider's name for a field of message `index`, from the relay's (`to[0].address` ->
   * `personalizations[0].to[0].email`), so a validation error names a field in the caller's own request.
   * `(message)` stands for the message as a whole. It outlives the bodies (a later message's failure is
   * named after the first was sent), so it holds the request's shape, not its content.
   */
  fieldOf(index: number, relayField: string): string;
  /** What the provider's success answer repeats from the request (Postmark's `To`). */
  echo?: Readonly<Record<string, string>>;
}

/**
 * The parts of an HTTP request a compatible API reads. An @azure/functions HttpRequest is one; the core
 * stays free of the Functions types.
 */
export interface CompatibleHttpRequest extends BodyStreamSource {
  readonly params: Readonly<Record<string, string>>;
}

/** A compatible API's answer, as the HTTP edge sends it. */
export interface CompatibleResponse {
  status: number;
  jsonBody?: unknown;
  headers?: Record<string, string>;
}

/** The relay's answer that a provider writes in its own error shape: the relay's error code, status and texts. */
export interface RelayRefusal {
  status: number;
  error: ErrorBody['error'];
}

export interface CompatibleApi {
  /**
   * Reads the request. Anything refused here (a malformed body, a feature the relay cannot honour) throws a
   * RelayError, `invalid_request` with the provider's field names for field problems.
   */
  read(request: CompatibleHttpRequest, maxBodyBytes: number): Promise<CompatibleRequest>;
  /** The provider's success response for the relay's answers (200 SendResult or 202 queued, one per body). */
  accepted(responses: readonly SendResponse[], echo: CompatibleRequest['echo']): CompatibleResponse;
  /** The provider's error response, with the status its SDKs expect for this kind of failure. */
  refused(refusal: RelayRefusal): CompatibleResponse;
  /** The request body, for the API description (its content type first). */
  request: { contentTypes: readonly string[]; schema: z.ZodType };
  /** The error body, for the API description. */
  errorSchema: z.ZodType;
  /** What the provider's SDK expects a key to start with (npm run caller-key -- --for <provider>). */
  keyPrefix?: string;
}
