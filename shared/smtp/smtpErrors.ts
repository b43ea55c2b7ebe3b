import { type ErrorCode, isErrorCode } from '../errorCodes.ts';
import { RelayError } from '../errors.ts';
import { redactSecrets } from '../redact.ts';

/**
 * Exchange Online's SMTP replies, turned into errors a person can act on: one table of rules, matched in
 * order on the reply text (enhanced status code and Exchange's own words). Each names a code of the error
 * table (shared/errorCodes.ts), which holds its status, message, remedy and Retry-After and cites the
 * sources.
 */
interface ReplyRule {
  test: RegExp;
  code: ErrorCode;
  /** Where the code's title says more than Exchange's refusal (message_too_large is also the relay's limit). */
  message?: string;
}

const smtpReplyRules: ReplyRule[] = [
  { test: /5\.7\.139.*security defaults/i, code: 'smtp_auth_blocked_by_security_defaults' },
  { test: /5\.7\.139/, code: 'smtp_auth_disabled' },
  { test: /5\.7\.3\b/, code: 'smtp_auth_rejected' },
  { test: /5\.7\.57/, code: 'smtp_not_authenticated' },
  { test: /5\.7\.30|basic authentication is (?:not supported|disabled)/i, code: 'smtp_basic_auth_rejected' },
  { test: /SendAsDenied|5\.7\.60|5\.2\.252/i, code: 'send_as_denied' },
  { test: /SubmissionQuotaExceeded/i, code: 'recipient_quota_exceeded' },
  { test: /5\.2\.2\b|QuotaExceededException|mailbox full/i, code: 'sent_items_full' },
  { test: /OutboundSpam|5\.1\.8/i, code: 'sender_restricted' },
  { test: /5\.7\.(?:708|705|501)/, code: 'tenant_sending_blocked' },
  { test: /4\.7\.66|TLS 1\.0 and 1\.1/i, code: 'smtp_tls_version_rejected' },
  { test: /4\.2\.0.*(?:STOREDRV|logon)|mailbox logon failure/i, code: 'mailbox_logon_failed' },
  { test: /4\.3\.2|concurrent connections/i, code: 'smtp_throttled' },
  {
    test: /5\.3\.4|5\.2\.3|message size exceeds/i,
    code: 'message_too_large',
    message: 'Exchange Online refused the message as too large.',
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
    return original === undefined || !isErrorCode(original)
      ? error
      : new RelayError(original, {
          message: error.message,
          remedy: error.remedy,
          details: error.details,
          retryAfterSeconds: error.retryAfterSeconds,
        });
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
      return new RelayError(rule.code, { message: rule.message, details });
    }
    if (failure.code === 'EENVELOPE' && (failure.rejected?.length ?? 0) > 0) {
      return new RelayError('recipients_rejected', {
        message: `Exchange Online rejected every recipient: ${failure.rejected?.join(', ')}.`,
        details: { ...details, rejected: failure.rejected },
      });
    }
    if (failure.responseCode >= 400 && failure.responseCode < 500) {
      return new RelayError('smtp_transient', {
        message: `Exchange Online answered with a temporary failure (${failure.responseCode}).`,
        details,
      });
    }
    return new RelayError('smtp_rejected', {
      message: `Exchange Online rejected the message (${failure.responseCode}).`,
      details,
    });
  }

  const systemCode = failure.originalCode ?? failure.code ?? '';
  const text = failure.message ?? '';
  const endpoint = `${context.host}:${context.port}`;
  if (untrustedCertificateCodes.has(systemCode) || /certificate|self[- ]signed/i.test(text)) {
    return new RelayError('smtp_certificate_untrusted', {
      message: `The TLS certificate presented by ${endpoint} is not trusted${systemCode === '' ? '' : ` (${systemCode})`}.`,
      details: { mailbox: context.mailbox, tlsError: systemCode },
    });
  }
  if (failure.code === 'ETLS' || /STARTTLS/i.test(text)) {
    return new RelayError('smtp_starttls_failed', {
      message: `${endpoint} did not complete STARTTLS; the relay never sends without TLS 1.2 or later.`,
      details: { mailbox: context.mailbox },
    });
  }
  return new RelayError('smtp_unreachable', {
    message: `Could not complete the SMTP conversation with ${endpoint}${systemCode === '' ? '' : ` (${systemCode})`}.`,
    details: { mailbox: context.mailbox, networkError: systemCode },
  });
}
