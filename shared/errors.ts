/**
 * One error type for everything the relay refuses or fails at. Each carries a stable machine-readable
 * `code`, the HTTP status a caller sees, a message, and where a person can act on it, a `remedy`.
 * Lower layers (SMTP replies, AADSTS codes, Key Vault answers) are mapped into RelayErrors at their edge.
 */
export interface FieldProblem {
  /** JSON path of the offending field, e.g. `to[1].address` or `attachments[0].content`. */
  field: string;
  message: string;
}

export interface RelayErrorInit {
  code: string;
  status: number;
  message: string;
  remedy?: string;
  details?: FieldProblem[] | Record<string, unknown>;
  /** Seconds a caller should wait before retrying; sent as the `Retry-After` header. */
  retryAfterSeconds?: number;
  /** True when the same request may succeed later without anyone changing anything. */
  transient?: boolean;
}

export class RelayError extends Error {
  readonly code: string;
  readonly status: number;
  readonly remedy: string | undefined;
  readonly details: FieldProblem[] | Record<string, unknown> | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly transient: boolean;

  constructor(init: RelayErrorInit) {
    super(init.message);
    this.name = 'RelayError';
    this.code = init.code;
    this.status = init.status;
    this.remedy = init.remedy;
    this.details = init.details;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.transient = init.transient ?? false;
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
  return new RelayError({
    code: 'internal_error',
    status: 500,
    message: 'The relay failed unexpectedly. The failure was logged with this request id.',
  });
}

export function invalidRequest(problems: FieldProblem[]): RelayError {
  const fields = problems.map((problem) => problem.field).join(', ');
  return new RelayError({
    code: 'invalid_request',
    status: 400,
    message: `The request has invalid fields: ${fields}`,
    details: problems,
  });
}
