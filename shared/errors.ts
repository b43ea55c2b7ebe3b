import { type ErrorCode, errorCodes } from './errorCodes.ts';

/**
 * One error type for everything the relay refuses or fails at. Each is built from a stable machine-readable
 * `code` in the error table (shared/errorCodes.ts), which gives its HTTP status, whether it is transient,
 * and its default message and remedy; the call site adds what it knows: a message with the values that
 * matter, a more specific remedy, details. Lower layers (SMTP replies, AADSTS codes, Key Vault answers)
 * are mapped into RelayErrors at their edge.
 */
export interface FieldProblem {
  /** JSON path of the offending field, e.g. `to[1].address` or `attachments[0].content`. */
  field: string;
  message: string;
}

export interface RelayErrorOptions {
  /** What happened, with the values that matter; the code's title when absent. */
  message?: string | undefined;
  /** What to do; the code's remedy when absent. */
  remedy?: string | undefined;
  details?: FieldProblem[] | Record<string, unknown> | undefined;
  /** For a transient code, when the call site knows the wait better than the table's default. */
  retryAfterSeconds?: number | undefined;
}

export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly remedy: string | undefined;
  readonly details: FieldProblem[] | Record<string, unknown> | undefined;
  /** Seconds a caller should wait before retrying; sent as the `Retry-After` header. */
  readonly retryAfterSeconds: number | undefined;
  /** True when the same request may succeed later without anyone changing anything. */
  readonly transient: boolean;

  constructor(code: ErrorCode, options: RelayErrorOptions = {}) {
    const entry = errorCodes[code];
    super(options.message ?? entry.title);
    this.name = 'RelayError';
    this.code = code;
    this.status = entry.status;
    this.remedy = options.remedy ?? entry.remedy;
    this.details = options.details;
    // Only a transient code carries a Retry-After: waiting does not fix anything else.
    this.transient = entry.retryAfterSeconds !== undefined;
    this.retryAfterSeconds = this.transient
      ? (options.retryAfterSeconds ?? entry.retryAfterSeconds)
      : undefined;
  }
}

export interface ErrorBody {
  error: {
    code: string;
    message: string;
    remedy?: string;
    details?: FieldProblem[] | Record<string, unknown>;
  };
}

export function toErrorBody(error: RelayError): ErrorBody {
  return {
    error: {
      code: error.code,
      message: error.message,
      ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
      ...(error.details === undefined ? {} : { details: error.details }),
    },
  };
}

/**
 * Anything that is not a RelayError is a bug or an unmapped failure: the caller gets a generic 500 and
 * nothing of the original message, which could carry a token or a secret from a library's error text.
 */
export function ensureRelayError(error: unknown): RelayError {
  if (error instanceof RelayError) return error;
  return new RelayError('internal_error');
}

export function invalidRequest(problems: FieldProblem[]): RelayError {
  const fields = problems.map((problem) => problem.field).join(', ');
  return new RelayError('invalid_request', {
    message: `The request has invalid fields: ${fields}`,
    details: problems,
  });
}
