import { smtpReplyRules } from '../smtp/smtpErrors.ts';
import { aadstsRules } from '../tokens/identityErrors.ts';

/**
 * Every error code the relay can answer with, its HTTP status and where it comes from: the one list the
 * API description (shared/api/openApi.ts) and docs/troubleshooting.md are checked against. The AADSTS and
 * SMTP reply tables contribute their codes themselves; everything else is listed here.
 * test/shared/api/errorCatalog.test.ts fails when a `code: '...'` in shared/ or functions/ is missing
 * here (or has another status), or when a code here is not documented in docs/troubleshooting.md.
 */
export type ErrorArea = 'request' | 'caller' | 'configuration' | 'secrets' | 'identity' | 'smtp' | 'internal';

export interface ErrorCatalogEntry {
  code: string;
  status: number;
  area: ErrorArea;
  /** One line: what happened. docs/troubleshooting.md says how to fix it. */
  summary: string;
}

const listed: ErrorCatalogEntry[] = [
  { code: 'unsupported_media_type', status: 415, area: 'request', summary: 'The body is not JSON.' },
  { code: 'invalid_json', status: 400, area: 'request', summary: 'The body is empty or not valid JSON.' },
  {
    code: 'request_too_large',
    status: 413,
    area: 'request',
    summary: 'The request body exceeds the size limit.',
  },
  {
    code: 'invalid_request',
    status: 400,
    area: 'request',
    summary: 'Fields are missing or invalid; details lists each field by its JSON path.',
  },
  {
    code: 'too_many_recipients',
    status: 413,
    area: 'request',
    summary: 'More recipients than RELAY_MAX_RECIPIENTS.',
  },
  {
    code: 'message_too_large',
    status: 413,
    area: 'request',
    summary: 'The encoded message would exceed RELAY_MAX_MESSAGE_BYTES, or Exchange refused it as too large.',
  },
  {
    code: 'no_callers_configured',
    status: 401,
    area: 'caller',
    summary: 'RELAY_CALLERS is empty.',
  },
  { code: 'caller_key_missing', status: 401, area: 'caller', summary: 'No x-relay-key header.' },
  {
    code: 'caller_key_invalid',
    status: 401,
    area: 'caller',
    summary: 'The x-relay-key matches no caller.',
  },
  {
    code: 'sender_not_allowed',
    status: 403,
    area: 'caller',
    summary: 'The caller may not send as this From address.',
  },
  {
    code: 'relay_misconfigured',
    status: 500,
    area: 'configuration',
    summary: 'An application setting is invalid.',
  },
  {
    code: 'relay_not_configured',
    status: 500,
    area: 'configuration',
    summary: 'RELAY_TENANT_ID or RELAY_CLIENT_ID is not set.',
  },
  {
    code: 'client_credential_missing',
    status: 500,
    area: 'secrets',
    summary: "The app's client secret or certificate is not in the secret store.",
  },
  {
    code: 'client_certificate_unreadable',
    status: 500,
    area: 'secrets',
    summary: 'The stored certificate is not an unencrypted PEM key plus certificate.',
  },
  {
    code: 'secret_name_invalid',
    status: 500,
    area: 'secrets',
    summary: 'A secret name is not a valid Key Vault name.',
  },
  {
    code: 'secret_store_corrupt',
    status: 500,
    area: 'secrets',
    summary: 'The local secret file is not valid JSON.',
  },
  {
    code: 'secret_store_access_denied',
    status: 500,
    area: 'secrets',
    summary: "Key Vault refused the Function App's identity (401/403).",
  },
  {
    code: 'secret_store_rejected',
    status: 500,
    area: 'secrets',
    summary: 'Key Vault rejected the request (4xx).',
  },
  {
    code: 'secret_store_throttled',
    status: 503,
    area: 'secrets',
    summary: 'Key Vault is throttling (429).',
  },
  {
    code: 'secret_store_unavailable',
    status: 503,
    area: 'secrets',
    summary: 'Key Vault could not be reached.',
  },
  {
    code: 'identity_unavailable',
    status: 503,
    area: 'identity',
    summary: 'Entra ID could not issue a token right now.',
  },
  {
    code: 'consent_required',
    status: 502,
    area: 'identity',
    summary: 'The stored sign-in of a delegated mailbox can no longer be used.',
  },
  {
    code: 'token_request_failed',
    status: 502,
    area: 'identity',
    summary: 'Entra ID refused the token request for an unlisted reason (see details.aadsts).',
  },
  {
    code: 'managed_identity_failed',
    status: 502,
    area: 'identity',
    summary: "The Function App's managed identity could not issue the federated client assertion.",
  },
  {
    code: 'recipients_rejected',
    status: 422,
    area: 'smtp',
    summary: 'Exchange rejected every recipient.',
  },
  {
    code: 'smtp_transient',
    status: 503,
    area: 'smtp',
    summary: 'Exchange answered with a temporary (4xx) failure.',
  },
  {
    code: 'smtp_rejected',
    status: 502,
    area: 'smtp',
    summary: 'Exchange rejected the message with an unlisted reply.',
  },
  {
    code: 'smtp_certificate_untrusted',
    status: 502,
    area: 'smtp',
    summary: "The SMTP server's TLS certificate is not trusted.",
  },
  {
    code: 'smtp_starttls_failed',
    status: 502,
    area: 'smtp',
    summary: 'STARTTLS did not complete.',
  },
  {
    code: 'smtp_unreachable',
    status: 503,
    area: 'smtp',
    summary: 'The SMTP conversation could not be completed (network).',
  },
  {
    code: 'mailbox_not_delegated',
    status: 400,
    area: 'request',
    summary: 'Consent was started for a mailbox that RELAY_MAILBOXES does not list as delegated.',
  },
  {
    code: 'mailbox_not_connected',
    status: 409,
    area: 'identity',
    summary: 'A delegated mailbox has no stored sign-in yet (or it was removed).',
  },
  {
    code: 'token_cache_too_large',
    status: 500,
    area: 'secrets',
    summary: "The mailbox's MSAL token cache would exceed Key Vault's 25 KB secret limit.",
  },
  {
    code: 'mailbox_rate_limited',
    status: 429,
    area: 'smtp',
    summary: 'The sender mailbox is at RELAY_MAILBOX_RATE_PER_MINUTE and no slot freed within the wait.',
  },
  {
    code: 'idempotency_key_reused',
    status: 422,
    area: 'request',
    summary: 'The Idempotency-Key was used before with a different body.',
  },
  {
    code: 'idempotency_request_in_progress',
    status: 409,
    area: 'request',
    summary: 'The first request with this Idempotency-Key is still being processed.',
  },
  {
    code: 'invalid_idempotency_key',
    status: 400,
    area: 'request',
    summary: 'The Idempotency-Key is empty, longer than 256 characters or not printable ASCII.',
  },
  {
    code: 'storage_unavailable',
    status: 503,
    area: 'configuration',
    summary: 'The storage account for queued sending and idempotency keys could not be reached.',
  },
  {
    code: 'send_not_found',
    status: 404,
    area: 'request',
    summary: 'No queued message with this id for this caller.',
  },
  {
    code: 'caller_removed',
    status: 403,
    area: 'caller',
    summary:
      "A queued message's caller was removed from RELAY_CALLERS before it was sent (shown in its status).",
  },
  {
    code: 'queue_message_invalid',
    status: 500,
    area: 'internal',
    summary: 'A message on the send queue could not be read; it goes to the poison queue.',
  },
  {
    code: 'internal_error',
    status: 500,
    area: 'internal',
    summary: 'An unexpected failure; details.requestId finds it in the logs.',
  },
];

/** Identity table rules all answer 502 (mapIdentityError). */
const fromIdentityTable: ErrorCatalogEntry[] = aadstsRules.map((rule) => ({
  code: rule.code,
  status: 502,
  area: 'identity',
  summary: `Entra ID refused the token: ${rule.meaning} (AADSTS${rule.codes.join(', ')}).`,
}));

const fromSmtpTable: ErrorCatalogEntry[] = smtpReplyRules.map((rule) => ({
  code: rule.code,
  status: rule.status,
  area: rule.code === 'message_too_large' ? 'request' : 'smtp',
  summary: rule.message,
}));

function uniqueByCodeAndStatus(entries: ErrorCatalogEntry[]): ErrorCatalogEntry[] {
  const seen = new Map<string, ErrorCatalogEntry>();
  for (const entry of entries) {
    const key = `${entry.code}:${entry.status}`;
    if (!seen.has(key)) seen.set(key, entry);
  }
  return [...seen.values()];
}

export const errorCatalog: readonly ErrorCatalogEntry[] = uniqueByCodeAndStatus([
  ...listed,
  ...fromIdentityTable,
  ...fromSmtpTable,
]);

export function errorsIn(areas: readonly ErrorArea[]): ErrorCatalogEntry[] {
  return errorCatalog.filter((entry) => areas.includes(entry.area));
}
