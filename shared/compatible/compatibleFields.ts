import type { z } from 'zod';
import type { ErrorBody, FieldProblem } from '../errors.ts';
import { formatFieldPath } from '../message.ts';
import type { RelayRefusal } from './compatibleApi.ts';

/**
 * What the compatible APIs share in reading requests and writing refusals: features the relay cannot honour
 * are refused by name, zod problems become field paths in the provider's own request, and a relay error
 * becomes the list of problems a provider's error body holds.
 */

/** For each field the relay cannot honour, why not and what to do instead. */
export type Unsupported<T> = Partial<Record<keyof T, string>>;

/** A problem for each unsupported field the request sets (`null`, `false` and empty values included). */
export function refuseUnsupported<T extends object>(
  request: T,
  unsupported: Unsupported<T>,
  prefix: string,
): FieldProblem[] {
  return Object.entries(unsupported).flatMap(([field, reason]) =>
    (request as Record<string, unknown>)[field] === undefined
      ? []
      : [{ field: `${prefix}${field}`, message: `is not supported: ${String(reason)}` }],
  );
}

export function zodProblems(error: z.ZodError): FieldProblem[] {
  return error.issues.map((issue) => ({ field: formatFieldPath(issue.path), message: issue.message }));
}

export interface ProviderProblem {
  /** The field at fault, in the provider's request; null when the problem is not one field's. */
  field: string | null;
  message: string;
}

/**
 * A relay error as problems: each field of an invalid_request (or the one field its details name) (`"personalizations[0].to[0].email: must be
 * an email address"`), otherwise the one message. Only the relay's own texts, which never hold a secret or
 * a body.
 */
export function formatProblems(error: ErrorBody['error']): ProviderProblem[] {
  if (error.code === 'invalid_request' && Array.isArray(error.details) && error.details.length > 0) {
    return error.details.map((problem) => ({
      field: problem.field,
      message: `${problem.field}: ${problem.message}`,
    }));
  }
  const details = error.details as { field?: unknown } | undefined;
  return [{ field: typeof details?.field === 'string' ? details.field : null, message: error.message }];
}

/**
 * One line for providers whose errors carry one message: each problem led by its field (`from: Caller
 * "x" may not send as …`), then what to do, then the relay's code.
 */
export function oneLine(refusal: RelayRefusal): string {
  const problems = formatProblems(refusal.error).map((problem) =>
    problem.field === null || problem.message.startsWith(`${problem.field}:`)
      ? problem.message
      : `${problem.field}: ${problem.message}`,
  );
  const remedy = refusal.error.remedy === undefined ? '' : ` ${refusal.error.remedy}`;
  return `${problems.join('; ')}${remedy} (relay error ${refusal.error.code})`;
}

/**
 * The statuses of SendGrid and Mailgun: 413 for anything too large, the relay's own for a bad key (401), a
 * sender not allowed (403), a limit (429) and a failure past the request (5xx), 400 for anything else wrong
 * with the request.
 */
export function badRequestStatus(refusal: RelayRefusal): number {
  const code = refusal.error.code;
  if (code === 'message_too_large' || code === 'request_too_large') return 413;
  if (refusal.status === 401 || refusal.status === 403 || refusal.status === 429 || refusal.status >= 500)
    return refusal.status;
  return 400;
}
