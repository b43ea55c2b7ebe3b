/**
 * Every error code the relay answers with, in one table: the HTTP status a caller sees, whose problem it is
 * (area), one line saying what happened, and where it does not depend on the failure's values, the remedy.
 * A RelayError is built from a code (shared/errors.ts), so a code's status and Retry-After come from here
 * and nowhere else, and a code missing here does not compile. shared/api/errorCatalog.ts and the OpenAPI
 * document are made from this table; docs/troubleshooting.md documents each code and
 * test/shared/api/errorCatalog.test.ts checks that the two agree.
 */

/** `request` and `caller` are the caller's to fix; `configuration`, `secrets` and `identity` the relay
 * administrator's; `smtp` mostly the Exchange administrator's. */
export type ErrorArea = 'request' | 'caller' | 'configuration' | 'secrets' | 'identity' | 'smtp' | 'internal';

export interface ErrorCodeEntry {
  status: number;
  area: ErrorArea;
  /** One line: what happened. The message, where a call site has nothing more specific to say. */
  title: string;
  /** What to do, where it needs no values from the failure; a call site may pass a more specific one. */
  remedy?: string;
  /**
   * Present for transient codes only: the same request may succeed later without anyone changing anything.
   * Seconds to wait (the `Retry-After` header) unless the call site knows better.
   */
  retryAfterSeconds?: number;
  /**
   * Whose health a send or a token refresh that meets this code marks as failing (shared/health/): the
   * mailbox that signed in, or the app's credential, which every mailbox depends on.
   */
  health?: 'mailbox' | 'credential';
}

const relayErrorCodes = {
  // The request itself.
  unsupported_media_type: {
    status: 415,
    area: 'request',
    title: 'The body is neither JSON nor (on /api/send) a raw MIME message.',
  },
  invalid_json: { status: 400, area: 'request', title: 'The body is empty or not valid JSON.' },
  request_too_complex: {
    status: 400,
    area: 'request',
    title: 'The JSON body nests deeper, holds more values or longer keys than any send request needs.',
    remedy: 'Send the request as documented; the message names the bound that was exceeded.',
  },
  invalid_mime: {
    status: 400,
    area: 'request',
    title: 'The raw MIME message (Content-Type: message/rfc822) is malformed or breaks a header rule.',
    remedy: 'Fix the header the message names; nothing was sent.',
  },
  request_too_large: {
    status: 413,
    area: 'request',
    title: 'The request body exceeds the size limit.',
    remedy: 'Send smaller attachments, or share large files by link.',
  },
  invalid_request: {
    status: 400,
    area: 'request',
    title: 'Fields are missing or invalid; details lists each field by its JSON path.',
  },
  too_many_recipients: {
    status: 413,
    area: 'request',
    title: 'More recipients than RELAY_MAX_RECIPIENTS.',
    remedy: 'Split the recipients over several messages.',
  },
  // Raised before sending (the relay's own limit) and when Exchange answers 5.3.4 / 5.2.3: one code, one
  // status, because the caller does the same thing about either.
  message_too_large: {
    status: 413,
    area: 'request',
    title: 'The encoded message would exceed RELAY_MAX_MESSAGE_BYTES, or Exchange refused it as too large.',
    remedy:
      'Send smaller attachments (the default mailbox send limit is 35 MB encoded), or share large files by link.',
  },
  mailbox_not_delegated: {
    status: 400,
    area: 'request',
    title: 'Consent was started for a mailbox that RELAY_MAILBOXES does not list as delegated.',
  },
  idempotency_key_reused: {
    status: 422,
    area: 'request',
    title: 'This Idempotency-Key was already used with a different request body in the last 24 hours.',
    remedy: 'Use a new key for a new message; resend the original body to get the original answer.',
  },
  idempotency_request_in_progress: {
    status: 409,
    area: 'request',
    title: 'A request with this Idempotency-Key is still being processed; it was not sent again.',
    remedy: 'Retry after the Retry-After delay to get its answer.',
    retryAfterSeconds: 5,
  },
  invalid_idempotency_key: {
    status: 400,
    area: 'request',
    title: 'The Idempotency-Key is empty, longer than 256 characters or not printable ASCII.',
    remedy: 'Use a UUID per logical message, and send the same key when you retry that message.',
  },
  send_not_found: {
    status: 404,
    area: 'request',
    title: 'No queued message with this id for this caller.',
    remedy: 'Use the id (or statusUrl) from the 202 answer, with the same caller key that sent it.',
  },

  // Who is calling.
  no_callers_configured: {
    status: 401,
    area: 'caller',
    title: 'No caller may send yet: the relay has no caller keys configured.',
    remedy:
      'Create a key with `npm run caller-key -- --name <app> --senders <address>` and add it to RELAY_CALLERS.',
  },
  caller_key_missing: { status: 401, area: 'caller', title: 'No x-relay-key header.' },
  caller_key_invalid: {
    status: 401,
    area: 'caller',
    title: 'The x-relay-key matches no caller.',
    remedy: 'Check the key; if it was rotated, ask the relay administrator for the new one.',
  },
  sender_not_allowed: {
    status: 403,
    area: 'caller',
    title: 'The caller may not send as this From address.',
    remedy:
      "Send from a mailbox this caller was granted, or ask the administrator to add it to the caller's senders in RELAY_CALLERS.",
  },
  caller_removed: {
    status: 403,
    area: 'caller',
    title:
      "A queued message's caller was removed from RELAY_CALLERS before it was sent (shown in its status).",
    remedy: 'Restore the caller in RELAY_CALLERS and replay the message from the poison queue.',
  },

  // The relay's settings and storage.
  relay_misconfigured: {
    status: 500,
    area: 'configuration',
    title: 'An application setting is invalid.',
    remedy: 'Fix the named application settings (see local.settings.sample.json and the README) and restart.',
  },
  relay_not_configured: {
    status: 500,
    area: 'configuration',
    title: 'RELAY_TENANT_ID or RELAY_CLIENT_ID is not set.',
    remedy:
      'Set them to the Directory (tenant) ID and Application (client) ID of the Entra app registration.',
  },
  storage_unavailable: {
    status: 503,
    area: 'configuration',
    title: 'The storage account for queued sending and idempotency keys could not be reached.',
    remedy:
      'Retry after the Retry-After delay. If it persists, check RELAY_STORAGE_CONNECTION and that the storage account is reachable from the Function App.',
    retryAfterSeconds: 10,
  },

  // The secret store (Key Vault, or the local file).
  client_credential_missing: {
    status: 500,
    health: 'credential',
    area: 'secrets',
    title: "The app's client secret or certificate is not in the secret store.",
  },
  client_certificate_unreadable: {
    status: 500,
    health: 'credential',
    area: 'secrets',
    title: 'The stored certificate is not an unencrypted PEM key plus certificate.',
  },
  secret_name_invalid: {
    status: 500,
    area: 'secrets',
    title: 'A secret name is not a valid Key Vault name.',
  },
  secret_store_corrupt: {
    status: 500,
    area: 'secrets',
    title: 'The local secret file is not valid JSON.',
    remedy: 'Fix or remove the file (RELAY_LOCAL_SECRETS_PATH) and store the secrets again.',
  },
  secret_store_access_denied: {
    status: 500,
    area: 'secrets',
    title: "Key Vault refused the Function App's identity (401/403).",
    remedy:
      "Give the Function App's managed identity the 'Key Vault Secrets Officer' role on the vault (RBAC), or check RELAY_KEY_VAULT_URL.",
  },
  secret_store_rejected: {
    status: 500,
    area: 'secrets',
    title: 'Key Vault rejected the request (4xx).',
    remedy: 'Check the secret names and sizes (values at most 25 KB).',
  },
  secret_store_throttled: {
    status: 503,
    area: 'secrets',
    title: 'Key Vault is throttling (429).',
    remedy:
      'Retry later. If this persists, something else is calling the vault too often (Key Vault allows 4,000 reads per 10 s).',
    retryAfterSeconds: 10,
  },
  secret_store_unavailable: {
    status: 503,
    area: 'secrets',
    title: 'Key Vault could not be reached.',
    remedy: 'Retry later; check the vault URL, its firewall and the network path from the Function App.',
    retryAfterSeconds: 30,
  },
  token_cache_too_large: {
    status: 500,
    health: 'mailbox',
    area: 'secrets',
    title:
      "The mailbox's MSAL token cache would exceed Key Vault's 25 KB secret limit even with only its refresh token.",
    remedy:
      'Connect the mailbox again (open /api/oauth/start?mailbox=<address>, or Reconnect on the admin page). Never delete its msal-cache secret: Key Vault refuses a write under a deleted name.',
  },

  // Entra ID. The AADSTS rules in shared/tokens/identityErrors.ts choose among the codes titled "Token
  // request refused"; the message adds the AADSTS code Entra ID answered with.
  identity_unavailable: {
    status: 503,
    area: 'identity',
    title: 'Entra ID could not issue a token right now.',
    remedy: 'Retry later; check outbound HTTPS to the authority host from the Function App.',
    retryAfterSeconds: 30,
  },
  consent_required: {
    status: 502,
    area: 'identity',
    title: 'The stored sign-in of a delegated mailbox can no longer be used.',
    remedy: 'Connect the mailbox again: open /api/oauth/start?mailbox=<address> and sign in as the mailbox.',
  },
  token_request_failed: {
    status: 502,
    area: 'identity',
    title: 'Entra ID refused the token request for an unlisted reason (see details.aadsts).',
  },
  managed_identity_failed: {
    status: 502,
    area: 'identity',
    title: "The Function App's managed identity could not issue the federated client assertion.",
    remedy:
      'Check that the user-assigned identity is attached to the Function App and RELAY_MANAGED_IDENTITY_CLIENT_ID is its client id (empty for the system-assigned identity). Outside Azure there is no managed identity: use RELAY_CREDENTIAL_TYPE secret or certificate.',
  },
  mailbox_not_connected: {
    status: 409,
    health: 'mailbox',
    area: 'identity',
    title: 'A delegated mailbox has no stored sign-in yet, or an administrator disconnected it.',
  },
  federated_credential_invalid: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title:
      "Token request refused: Entra ID did not accept the managed identity's token as a federated credential of the app.",
    remedy:
      "Add a federated credential to the app registration (Certificates & secrets > Federated credentials > Managed identity, or az ad app federated-credential create) with issuer https://login.microsoftonline.com/<tenant>/v2.0, subject = the managed identity's object (principal) id and audience api://AzureADTokenExchange; the deployment outputs list all three.",
  },
  client_secret_invalid: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: Entra ID rejected the client secret.',
    remedy:
      'Store the current client secret value (not its id) of the app registration in the secret store under RELAY_CLIENT_SECRET_NAME.',
  },
  client_secret_expired: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: the client secret has expired.',
    remedy:
      'Create a new client secret under the app registration > Certificates & secrets and store it under RELAY_CLIENT_SECRET_NAME, or switch to a certificate or a federated credential.',
  },
  client_certificate_invalid: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: Entra ID did not accept the certificate assertion.',
    remedy:
      'Upload the public certificate to the app registration > Certificates & secrets, and store the matching PEM private key and certificate under RELAY_CLIENT_CERTIFICATE_NAME.',
  },
  app_not_found: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: no application with this client id exists in the tenant.',
    remedy: 'Check RELAY_CLIENT_ID and RELAY_TENANT_ID against the app registration overview page.',
  },
  tenant_not_found: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: the tenant was not found.',
    remedy: 'Check RELAY_TENANT_ID (the Directory (tenant) ID) and RELAY_AUTHORITY_HOST for national clouds.',
  },
  app_disabled: {
    status: 502,
    health: 'credential',
    area: 'identity',
    title: 'Token request refused: the application is disabled in the tenant.',
    remedy: 'Enable the Enterprise Application (Properties > Enabled for users to sign in).',
  },
  scope_invalid: {
    status: 502,
    area: 'identity',
    title: 'Token request refused: the requested scope or resource is not valid for this tenant.',
    remedy:
      'Use RELAY_SMTP_SCOPE https://outlook.office365.com/.default for app-only sending (national clouds use their own Exchange resource).',
  },
  consent_missing: {
    status: 502,
    health: 'mailbox',
    area: 'identity',
    title: 'Token request refused: the permission was never consented.',
    remedy:
      'Grant admin consent for the SMTP permission (SMTP.SendAsApp for app-only, SMTP.Send for delegated) under API permissions.',
  },
  refresh_token_expired: {
    status: 502,
    health: 'mailbox',
    area: 'identity',
    title: 'Token request refused: the refresh token expired after 90 days without use.',
    remedy: 'Connect the mailbox again: open /api/oauth/start?mailbox=<address> and sign in as the mailbox.',
  },
  refresh_token_revoked: {
    status: 502,
    health: 'mailbox',
    area: 'identity',
    title:
      "Token request refused: the grant was revoked (password reset or the user's sessions were revoked).",
    remedy: 'Connect the mailbox again: open /api/oauth/start?mailbox=<address> and sign in as the mailbox.',
  },
  mfa_required: {
    status: 502,
    health: 'mailbox',
    area: 'identity',
    title: 'Token request refused: multi-factor authentication is now required.',
    remedy: 'Connect the mailbox again and complete MFA, or exclude the relay app from the MFA policy.',
  },
  conditional_access_blocked: {
    status: 502,
    health: 'mailbox',
    area: 'identity',
    title: 'Token request refused: a Conditional Access policy or security defaults blocked the token.',
    remedy:
      'Adjust the Conditional Access policy (sign-in frequency, location) for the relay app, then connect the mailbox again.',
  },

  // A request of several messages (a SendGrid request with several personalizations) whose later message
  // failed after earlier ones were sent: not transient, because repeating the request repeats those.
  partly_sent: {
    status: 502,
    area: 'smtp',
    title:
      "Some of the request's messages were sent before one failed; the message names which were sent and why the rest were not.",
    remedy:
      'Do not repeat the whole request (its first messages would go out twice): fix what the error names and send only the messages after the ones listed as sent.',
  },

  // Exchange Online's SMTP answers. The reply rules in shared/smtp/smtpErrors.ts choose among these; their
  // texts follow Microsoft Learn "Authenticate an IMAP, POP or SMTP connection using OAuth" and "Fix email
  // delivery issues for error code 5.7.x".
  smtp_auth_blocked_by_security_defaults: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title:
      'Exchange Online refused SMTP AUTH because security defaults are enabled for the tenant (535 5.7.139).',
    remedy:
      'Turn off security defaults (Entra ID > Properties) and protect sign-ins with Conditional Access instead, then enable Authenticated SMTP for the mailbox.',
  },
  smtp_auth_disabled: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title: 'Exchange Online has SMTP AUTH disabled for the tenant or this mailbox (535 5.7.139).',
    remedy:
      'Enable Authenticated SMTP for the mailbox: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false (or Microsoft 365 admin center > user > Mail > Manage email apps > Authenticated SMTP). The tenant-wide switch is Set-TransportConfig -SmtpClientAuthenticationDisabled $false.',
  },
  smtp_auth_rejected: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title: 'Exchange Online rejected the OAuth token even after a fresh one was fetched (535 5.7.3).',
    remedy:
      'App-only: run what npm run exchange-setup prints (New-ServicePrincipal with the Enterprise Application object id, the mailbox as a direct member of the scoped group with the Application SMTP.SendAsApp role assignment, or with --classic the Entra SMTP.SendAsApp consent and Add-MailboxPermission FullAccess); Exchange applies grants within 30 minutes to 2 hours. Delegated: connect the mailbox again. The scope must be https://outlook.office365.com/.default.',
  },
  smtp_not_authenticated: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title: 'Exchange Online says the client did not authenticate before sending (530 5.7.57).',
    remedy:
      'Check RELAY_SMTP_HOST is the SMTP AUTH submission endpoint (smtp.office365.com:587), not an MX endpoint or relay connector.',
  },
  smtp_basic_auth_rejected: {
    status: 502,
    area: 'smtp',
    title: 'Exchange Online rejected basic authentication (550 5.7.30).',
    remedy:
      'The relay uses OAuth; check that nothing in between (a proxy or connector) rewrites the AUTH command.',
  },
  send_as_denied: {
    status: 502,
    area: 'smtp',
    title:
      'Exchange Online refused to send as this From address: the mailbox that signed in has no Send As (or Send on Behalf) right on it.',
    remedy:
      'Grant the mailbox that signs in the right on the From address (Exchange checks that mailbox, app-only or delegated): Add-RecipientPermission -Identity <from> -Trustee <sign-in mailbox> -AccessRights SendAs, or Set-Mailbox -Identity <from> -GrantSendOnBehalfTo @{Add="<sign-in mailbox>"} for a sendOnBehalf route; the error names both addresses, and npm run exchange-setup prints the commands for every route in RELAY_SENDER_ROUTES.',
  },
  recipient_quota_exceeded: {
    status: 429,
    area: 'smtp',
    title:
      "The mailbox exceeded Exchange Online's limit of 10,000 recipients per day (554 5.2.0 SubmissionQuotaExceeded).",
    remedy:
      'Wait (the block lasts up to 24 hours) and spread high-volume mail over several mailboxes or use a bulk mail service.',
    retryAfterSeconds: 3600,
  },
  sender_restricted: {
    status: 502,
    area: 'smtp',
    title: 'Exchange Online blocked the mailbox from sending because it was flagged for outbound spam.',
    remedy:
      'Remove the mailbox from Restricted entities in the Microsoft Defender portal after checking it is not compromised.',
  },
  tenant_sending_blocked: {
    status: 502,
    area: 'smtp',
    title: 'Exchange Online blocked outbound mail for the tenant (reputation or spam).',
    remedy: 'Contact Microsoft 365 support; the tenant must be unblocked by Microsoft.',
  },
  smtp_tls_version_rejected: {
    status: 502,
    area: 'smtp',
    title: 'Exchange Online requires TLS 1.2 or later (421 4.7.66).',
    remedy:
      'Check that no TLS-inspecting proxy downgrades the connection; the relay itself never offers less than TLS 1.2.',
  },
  mailbox_logon_failed: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title:
      'Exchange Online could not log on to the mailbox with this token (4.2.0 STOREDRV mailbox logon failure).',
    remedy:
      'Register the app in Exchange (New-ServicePrincipal -AppId <client id> -ObjectId <Enterprise Application object id>) and grant it the mailbox: Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess. Changes can take up to an hour to apply.',
  },
  smtp_throttled: {
    status: 503,
    area: 'smtp',
    title:
      'Exchange Online is throttling this mailbox (432 4.3.2: more than 3 concurrent connections or too many messages).',
    remedy:
      'Retry after the Retry-After delay; keep other applications from sending as the same mailbox at the same time.',
    retryAfterSeconds: 60,
  },
  recipients_rejected: {
    status: 422,
    area: 'smtp',
    title: 'Exchange rejected every recipient.',
    remedy: 'Check the recipient addresses; the server reply says why.',
  },
  smtp_transient: {
    status: 503,
    area: 'smtp',
    title: 'Exchange answered with a temporary (4xx) failure.',
    remedy: 'Retry after the Retry-After delay.',
    retryAfterSeconds: 30,
  },
  smtp_rejected: {
    status: 502,
    area: 'smtp',
    title: 'Exchange rejected the message with an unlisted reply.',
    remedy: 'The server reply in details says why.',
  },
  smtp_certificate_untrusted: {
    status: 502,
    area: 'smtp',
    title: "The SMTP server's TLS certificate is not trusted.",
    remedy:
      'If a firewall inspects TLS on this network, put its CA certificate (PEM) in RELAY_SMTP_EXTRA_CA; otherwise check RELAY_SMTP_HOST names the real Exchange endpoint.',
  },
  smtp_starttls_failed: {
    status: 502,
    area: 'smtp',
    title: 'STARTTLS did not complete.',
    remedy:
      'Check RELAY_SMTP_HOST and RELAY_SMTP_PORT (smtp.office365.com, 587) and that nothing on the path strips STARTTLS.',
  },
  smtp_unreachable: {
    status: 503,
    area: 'smtp',
    title: 'The SMTP conversation could not be completed (network).',
    remedy: 'Retry later; check outbound TCP 587 from the Function App to the SMTP host.',
    retryAfterSeconds: 30,
  },
  // Every SMTP-submitted message is saved to the sending mailbox's Sent Items, which counts against its quota.
  sent_items_full: {
    status: 502,
    health: 'mailbox',
    area: 'smtp',
    title:
      'The signed-in mailbox is full (554 5.2.2 QuotaExceededException): every message sent over SMTP is saved to its Sent Items.',
    remedy:
      "Give the relay's sign-in mailbox a retention policy that empties Sent Items (New-RetentionPolicyTag 'Relay Sent Items' -Type SentItems -AgeLimitForRetention 7 -RetentionAction PermanentlyDelete; New-RetentionPolicy 'Relay mailbox' -RetentionPolicyTagLinks 'Relay Sent Items'; Set-Mailbox -Identity <mailbox> -RetentionPolicy 'Relay mailbox'), or raise its quota; then retry.",
  },
  // The relay's own per-mailbox limits, shared by every instance (Exchange Online throttles beyond 30
  // messages a minute and 10,000 recipients a day); the call site says how long until a start frees.
  mailbox_rate_limited: {
    status: 429,
    area: 'smtp',
    title:
      'The sender mailbox is at RELAY_MAILBOX_RATE_PER_MINUTE or RELAY_MAILBOX_RECIPIENTS_PER_DAY and no start freed within the wait.',
    retryAfterSeconds: 60,
  },
  queue_quota_exceeded: {
    status: 429,
    area: 'caller',
    title:
      'The caller already has RELAY_QUEUE_MAX_MESSAGES_PER_CALLER messages or RELAY_QUEUE_MAX_BYTES_PER_CALLER bytes waiting on the queue.',
    remedy:
      'Retry after the Retry-After delay, when some of its queued messages have gone; or ask the relay administrator for a larger quota.',
    retryAfterSeconds: 60,
  },
  mailbox_busy: {
    status: 429,
    area: 'smtp',
    title:
      'Every SMTP session the mailbox may have (RELAY_SMTP_MAX_CONNECTIONS, counted over all instances) stayed busy for the whole wait.',
    remedy:
      'Retry after the Retry-After delay, send with "Prefer: respond-async" to let the relay queue it, or spread mail over several sender mailboxes.',
    retryAfterSeconds: 5,
  },

  // The relay itself.
  queue_message_invalid: {
    status: 500,
    area: 'internal',
    title: 'A message on the send queue is not one the relay wrote; it was moved to the poison queue.',
  },
  internal_error: {
    status: 500,
    area: 'internal',
    title: 'The relay failed unexpectedly. The failure was logged with this request id.',
  },
} as const satisfies Record<string, ErrorCodeEntry>;

export type ErrorCode = keyof typeof relayErrorCodes;

/** Read through this type: every entry has the same fields, optional where some codes have none. */
export const errorCodes: Readonly<Record<ErrorCode, ErrorCodeEntry>> = relayErrorCodes;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorCodes, value);
}
