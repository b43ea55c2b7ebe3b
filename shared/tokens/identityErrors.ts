import type { RelayConfig } from '../config.ts';
import { type ErrorCode, errorCodes } from '../errorCodes.ts';
import { RelayError } from '../errors.ts';
import { type CredentialType, credentialKinds } from './credentialKinds.ts';

/**
 * Turns what Entra ID (through MSAL) answered into errors a person can act on. MSAL 7 no longer re-exports
 * msal-common's classes and a bare `invalid_grant` arrives as a ServerError, so classification is by the
 * AADSTS code in the message and by `errorCode` strings, never by `instanceof`.
 * Codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
 */
interface AadstsRule {
  codes: number[];
  /** A code of the error table (shared/errorCodes.ts): its title says what was refused, its remedy what to do. */
  code: ErrorCode;
  /** Needs the mailbox owner (or an admin) to sign in again through /api/oauth/start. */
  needsConsent?: boolean;
}

/**
 * Rules a credential kind claims (credentialKinds.ts) apply only when the app signs in with that kind: the
 * same AADSTS code has another cause for another kind. Every other rule applies to all.
 */
const kindSpecificRules = new Set<ErrorCode>(
  Object.values(credentialKinds).flatMap((kind): readonly ErrorCode[] => kind.aadstsRules),
);

function ruleApplies(rule: AadstsRule, credentialType: CredentialType): boolean {
  const claimed: readonly ErrorCode[] = credentialKinds[credentialType].aadstsRules;
  return !kindSpecificRules.has(rule.code) || claimed.includes(rule.code);
}

export const aadstsRules: AadstsRule[] = [
  // 70021/700211-700213: no federated credential matches the assertion's issuer, subject or audience;
  // 50013/700027/700024: its signature or lifetime was refused.
  {
    codes: [70021, 700211, 700212, 700213, 50013, 700027, 700024],
    code: 'federated_credential_invalid',
  },
  { codes: [7000215], code: 'client_secret_invalid' },
  { codes: [7000222], code: 'client_secret_expired' },
  { codes: [700027, 700024, 1000502], code: 'client_certificate_invalid' },
  { codes: [700016], code: 'app_not_found' },
  { codes: [90002, 900023, 90072], code: 'tenant_not_found' },
  { codes: [7000112], code: 'app_disabled' },
  { codes: [70011, 1002012, 500011], code: 'scope_invalid' },
  { codes: [65001], code: 'consent_missing', needsConsent: true },
  { codes: [700082, 70008], code: 'refresh_token_expired', needsConsent: true },
  { codes: [50173, 70000], code: 'refresh_token_revoked', needsConsent: true },
  { codes: [50076, 50079, 50074], code: 'mfa_required', needsConsent: true },
  { codes: [70043, 53003, 530035], code: 'conditional_access_blocked', needsConsent: true },
];

interface MsalLikeError {
  errorCode?: unknown;
  errorMessage?: unknown;
  message?: unknown;
  subError?: unknown;
  correlationId?: unknown;
  status?: unknown;
}

export function aadstsCodeOf(error: unknown): number | undefined {
  const candidate = error as MsalLikeError | null;
  const text = `${String(candidate?.errorMessage ?? '')} ${String(candidate?.message ?? '')}`;
  const match = /AADSTS(\d{4,8})/.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

export function needsConsent(error: RelayError): boolean {
  return (
    aadstsRules.some((rule) => rule.code === error.code && rule.needsConsent === true) ||
    error.code === 'consent_required'
  );
}

/** Maps what MSAL threw for one app identity; made once per identity by identityErrorMapper. */
export type IdentityErrorMapper = (error: unknown) => RelayError;

/**
 * The mapping bound to the app's identity: the same AADSTS code means a different thing per credential
 * type (700027 is a refused certificate or a refused federated assertion), so the type is fixed here, once,
 * for every flow that talks to Entra as this app (client credentials, code redemption, refresh).
 */
export function identityErrorMapper(
  identity: Pick<RelayConfig['identity'], 'authorityHost' | 'credentialType'>,
): IdentityErrorMapper {
  return (error) => mapIdentityError(error, identity);
}

export function mapIdentityError(
  error: unknown,
  context: { authorityHost: string; credentialType: CredentialType },
): RelayError {
  if (error instanceof RelayError) return error;
  const candidate = error as MsalLikeError | null;
  const errorCode = String(candidate?.errorCode ?? '');
  const aadsts = aadstsCodeOf(error);
  const correlationId = typeof candidate?.correlationId === 'string' ? candidate.correlationId : undefined;
  const details = {
    ...(aadsts === undefined ? {} : { aadsts: `AADSTS${aadsts}` }),
    ...(errorCode === '' ? {} : { identityError: errorCode }),
    ...(correlationId === undefined ? {} : { correlationId }),
  };
  const rule =
    aadsts === undefined
      ? undefined
      : aadstsRules.find(
          (entry) => entry.codes.includes(aadsts) && ruleApplies(entry, context.credentialType),
        );
  if (rule !== undefined) {
    // The title says what was refused; the message adds the AADSTS code Entra ID answered with.
    const title = errorCodes[rule.code].title.replace(/\.$/, '');
    return new RelayError(rule.code, { message: `${title} (AADSTS${aadsts}).`, details });
  }
  const status = typeof candidate?.status === 'number' ? candidate.status : undefined;
  const unreachable = [
    'network_error',
    'endpoints_resolution_error',
    'openid_config_error',
    'temporarily_unavailable',
  ];
  // AADSTS90033 (directory service unavailable) is transient; MSAL also replays it, without a status, from its
  // throttling cache while the provider's Retry-After lasts.
  const transientAadsts = aadsts === 90033;
  if (
    unreachable.includes(errorCode) ||
    transientAadsts ||
    (status !== undefined && (status >= 500 || status === 429))
  ) {
    return new RelayError('identity_unavailable', {
      message: `The identity provider at ${context.authorityHost} could not issue a token right now.`,
      details,
    });
  }
  if (
    errorCode === 'invalid_grant' ||
    errorCode === 'interaction_required' ||
    errorCode === 'no_tokens_found'
  ) {
    return new RelayError('consent_required', {
      message: `The stored sign-in can no longer be used${aadsts === undefined ? '' : ` (AADSTS${aadsts})`}.`,
      details,
    });
  }
  return new RelayError('token_request_failed', {
    message: `Token request failed${aadsts === undefined ? '' : ` (AADSTS${aadsts})`}${errorCode === '' ? '' : ` [${errorCode}]`}.`,
    remedy:
      'Check RELAY_TENANT_ID, RELAY_CLIENT_ID and the credential in the secret store; the AADSTS code explains the cause.',
    details,
  });
}
