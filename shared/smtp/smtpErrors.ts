import { RelayError } from '../errors.ts';
import { redactSecrets } from '../redact.ts';

/**
 * Exchange Online's SMTP replies, turned into errors a person can act on: one table, matched in order on
 * the reply text (enhanced status code and Exchange's own words). Sources: Microsoft Learn "Authenticate
 * an IMAP, POP or SMTP connection using OAuth", "Fix email delivery issues for error code 5.7.x", and
 * ../shared/notes/exchange-online-facts.md.
 */
interface ReplyRule {
  test: RegExp;
  code: string;
  status: number;
  message: string;
  remedy: string;
  retryAfterSeconds?: number;
}

export const smtpReplyRules: ReplyRule[] = [
  {
    test: /5\.7\.139.*security defaults/i,
    code: 'smtp_auth_blocked_by_security_defaults',
    status: 502,
    message:
      'Exchange Online refused SMTP AUTH because security defaults are enabled for the tenant (535 5.7.139).',
    remedy:
      'Turn off security defaults (Entra ID > Properties) and protect sign-ins with Conditional Access instead, then enable Authenticated SMTP for the mailbox.',
  },
  {
    test: /5\.7\.139/,
    code: 'smtp_auth_disabled',
    status: 502,
    message: 'Exchange Online has SMTP AUTH disabled for the tenant or this mailbox (535 5.7.139).',
    remedy:
      'Enable Authenticated SMTP for the mailbox: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false (or Microsoft 365 admin center > user > Mail > Manage email apps > Authenticated SMTP). The tenant-wide switch is Set-TransportConfig -SmtpClientAuthenticationDisabled $false.',
  },
  {
    test: /5\.7\.3\b/,
    code: 'smtp_auth_rejected',
    status: 502,
    message: 'Exchange Online rejected the OAuth token even after a fresh one was fetched (535 5.7.3).',
    remedy:
      'App-only: check the API permission Office 365 Exchange Online > SMTP.SendAsApp has admin consent, that New-ServicePrincipal was run with the Enterprise Application object id, and Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess. Delegated: connect the mailbox again. The scope must be https://outlook.office365.com/.default.',
  },
  {
    test: /5\.7\.57/,
    code: 'smtp_not_authenticated',
    status: 502,
    message: 'Exchange Online says the client did not authenticate before sending (530 5.7.57).',
    remedy:
      'Check RELAY_SMTP_HOST is the SMTP AUTH submission endpoint (smtp.office365.com:587), not an MX endpoint or relay connector.',
  },
  {
    test: /5\.7\.30|basic authentication is (?:not supported|disabled)/i,
    code: 'smtp_basic_auth_rejected',
    status: 502,
    message: 'Exchange Online rejected basic authentication (550 5.7.30).',
    remedy:
      'The relay uses OAuth; check that nothing in between (a proxy or connector) rewrites the AUTH command.',
  },
  {
    test: /SendAsDenied|5\.7\.60|5\.2\.252/i,
    code: 'send_as_denied',
    status: 502,
    message:
      'Exchange Online refused to send as this From address: the authenticated mailbox has no Send As right for it.',
    remedy:
      'Send from the authenticated mailbox itself, or grant the right: Add-RecipientPermission -Identity <from address> -Trustee <mailbox or service principal> -AccessRights SendAs (or Send on Behalf: Set-Mailbox <from> -GrantSendOnBehalfTo <mailbox>).',
  },
  {
    test: /SubmissionQuotaExceeded/i,
    code: 'recipient_quota_exceeded',
    status: 429,
    message:
      "The mailbox exceeded Exchange Online's limit of 10,000 recipients per day (554 5.2.0 SubmissionQuotaExceeded).",
    remedy:
      'Wait (the block lasts up to 24 hours) and spread high-volume mail over several mailboxes or use a bulk mail service.',
    retryAfterSeconds: 3600,
  },
  {
    test: /OutboundSpam|5\.1\.8/i,
    code: 'sender_restricted',
    status: 502,
    message: 'Exchange Online blocked the mailbox from sending because it was flagged for outbound spam.',
    remedy:
      'Remove the mailbox from Restricted entities in the Microsoft Defender portal after checking it is not compromised.',
  },
  {
    test: /5\.7\.(?:708|705|501)/,
    code: 'tenant_sending_blocked',
    status: 502,
    message: 'Exchange Online blocked outbound mail for the tenant (reputation or spam).',
    remedy: 'Contact Microsoft 365 support; the tenant must be unblocked by Microsoft.',
  },
  {
    test: /4\.7\.66|TLS 1\.0 and 1\.1/i,
    code: 'smtp_tls_version_rejected',
    status: 502,
    message: 'Exchange Online requires TLS 1.2 or later (421 4.7.66).',
    remedy:
      'Check that no TLS-inspecting proxy downgrades the connection; the relay itself never offers less than TLS 1.2.',
  },
  {
    test: /4\.2\.0.*(?:STOREDRV|logon)|mailbox logon failure/i,
    code: 'mailbox_logon_failed',
    status: 502,
    message:
      'Exchange Online could not log on to the mailbox with this token (4.2.0 STOREDRV mailbox logon failure).',
    remedy:
      'Register the app in Exchange (New-ServicePrincipal -AppId <client id> -ObjectId <Enterprise Application object id>) and grant it the mailbox: Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess. Changes can take up to an hour to apply.',
  },
  {
    test: /4\.3\.2|concurrent connections/i,
    code: 'smtp_throttled',
    status: 503,
    message:
      'Exchange Online is throttling this mailbox (432 4.3.2: more than 3 concurrent connections or too many messages).',
    remedy:
      'Retry after the Retry-After delay; keep other applications from sending as the same mailbox at the same time.',
    retryAfterSeconds: 60,
  },
  {
    test: /5\.3\.4|5\.2\.3|message size exceeds/i,
    code: 'message_too_large',
    status: 413,
    message: 'Exchange Online refused the message as too large.',
    remedy:
      'Send smaller attachments (the default mailbox send limit is 35 MB encoded), or share large files by link.',
  },
];

export interface SmtpFailure {
  code?: string | undefined;
  originalCode?: string | undefined;
  responseCode?: number | undefined;
  response?: string | undefined;
  rejected?: string[] | undefined;
  message?: string;
}

const untrustedCertificateCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function isTokenRejected(error: SmtpFailure): boolean {
  return error.responseCode === 535 && /5\.7\.3\b/.test(error.response ?? '');
}

export function mapSmtpError(
  error: unknown,
  context: { host: string; port: number; mailbox: string },
): RelayError {
  if (error instanceof RelayError) {
    // nodemailer rewrites `code` to EAUTH on errors raised inside its token callback; the original survives.
    const original = (error as RelayError & SmtpFailure).originalCode;
    return original === undefined
      ? error
      : new RelayError({ ...error, code: original, message: error.message, remedy: error.remedy });
  }
  const failure = (error ?? {}) as SmtpFailure;
  const reply = redactSecrets(failure.response ?? '');
  const details = {
    mailbox: context.mailbox,
    ...(failure.responseCode === undefined ? {} : { smtpCode: failure.responseCode }),
    ...(reply === '' ? {} : { serverReply: reply.slice(0, 500) }),
  };

  if (failure.responseCode !== undefined) {
    const rule = smtpReplyRules.find((entry) => entry.test.test(reply));
    if (rule !== undefined) {
      return new RelayError({
        code: rule.code,
        status: rule.status,
        message: rule.message,
        remedy: rule.remedy,
        details,
        ...(rule.retryAfterSeconds === undefined
          ? {}
          : { retryAfterSeconds: rule.retryAfterSeconds, transient: true }),
      });
    }
    if (failure.code === 'EENVELOPE' && (failure.rejected?.length ?? 0) > 0) {
      return new RelayError({
        code: 'recipients_rejected',
        status: 422,
        message: `Exchange Online rejected every recipient: ${failure.rejected?.join(', ')}.`,
        remedy: 'Check the recipient addresses; the server reply says why.',
        details: { ...details, rejected: failure.rejected },
      });
    }
    if (failure.responseCode >= 400 && failure.responseCode < 500) {
      return new RelayError({
        code: 'smtp_transient',
        status: 503,
        message: `Exchange Online answered with a temporary failure (${failure.responseCode}).`,
        remedy: 'Retry after the Retry-After delay.',
        retryAfterSeconds: 30,
        transient: true,
        details,
      });
    }
    return new RelayError({
      code: 'smtp_rejected',
      status: 502,
      message: `Exchange Online rejected the message (${failure.responseCode}).`,
      remedy: 'The server reply in details says why.',
      details,
    });
  }

  const systemCode = failure.originalCode ?? failure.code ?? '';
  const text = failure.message ?? '';
  const endpoint = `${context.host}:${context.port}`;
  if (untrustedCertificateCodes.has(systemCode) || /certificate|self[- ]signed/i.test(text)) {
    return new RelayError({
      code: 'smtp_certificate_untrusted',
      status: 502,
      message: `The TLS certificate presented by ${endpoint} is not trusted${systemCode === '' ? '' : ` (${systemCode})`}.`,
      remedy:
        'If a firewall inspects TLS on this network, put its CA certificate (PEM) in RELAY_SMTP_EXTRA_CA; otherwise check RELAY_SMTP_HOST names the real Exchange endpoint.',
      details: { mailbox: context.mailbox, tlsError: systemCode },
    });
  }
  if (failure.code === 'ETLS' || /STARTTLS/i.test(text)) {
    return new RelayError({
      code: 'smtp_starttls_failed',
      status: 502,
      message: `${endpoint} did not complete STARTTLS; the relay never sends without TLS 1.2 or later.`,
      remedy:
        'Check RELAY_SMTP_HOST and RELAY_SMTP_PORT (smtp.office365.com, 587) and that nothing on the path strips STARTTLS.',
      details: { mailbox: context.mailbox },
    });
  }
  return new RelayError({
    code: 'smtp_unreachable',
    status: 503,
    message: `Could not complete the SMTP conversation with ${endpoint}${systemCode === '' ? '' : ` (${systemCode})`}.`,
    remedy: 'Retry later; check outbound TCP 587 from the Function App to the SMTP host.',
    retryAfterSeconds: 30,
    transient: true,
    details: { mailbox: context.mailbox, networkError: systemCode },
  });
}
