import { describe, expect, it } from 'vitest';
import { type CredentialKind, credentialKinds } from '../../../shared/tokens/credentialKinds.ts';
import { aadstsRules, mapIdentityError } from '../../../shared/tokens/identityErrors.ts';

/** MSAL's ServerError shape: the AADSTS code is in errorMessage. */
function entraRefusal(aadsts: number): Record<string, unknown> {
  return { errorCode: 'invalid_client', errorMessage: `AADSTS${aadsts}: refused. Trace ID: x`, status: 401 };
}

const authorityHost = 'https://login.microsoftonline.com';

describe('mapIdentityError', () => {
  it('blames the certificate for a refused assertion when the app signs with a certificate', () => {
    const error = mapIdentityError(entraRefusal(700027), { authorityHost, credentialType: 'certificate' });
    expect(error).toMatchObject({ code: 'client_certificate_invalid', status: 502 });
  });

  it('blames the federated credential for the same AADSTS code when the managed identity signs', () => {
    const error = mapIdentityError(entraRefusal(700027), { authorityHost, credentialType: 'federated' });
    expect(error).toMatchObject({ code: 'federated_credential_invalid', status: 502 });
    expect(error.remedy).toContain('api://AzureADTokenExchange');
  });

  it('names a federated credential whose issuer, subject or audience matches nothing', () => {
    for (const aadsts of [70021, 700211, 700212, 700213]) {
      expect(
        mapIdentityError(entraRefusal(aadsts), { authorityHost, credentialType: 'federated' }).code,
      ).toBe('federated_credential_invalid');
    }
  });

  it('does not apply federated rules to a secret credential', () => {
    expect(mapIdentityError(entraRefusal(700213), { authorityHost, credentialType: 'secret' }).code).toBe(
      'token_request_failed',
    );
  });

  it('blames only the credential the app signs in with', () => {
    expect(mapIdentityError(entraRefusal(700027), { authorityHost, credentialType: 'secret' }).code).toBe(
      'token_request_failed',
    );
    expect(
      mapIdentityError(entraRefusal(7000215), { authorityHost, credentialType: 'certificate' }).code,
    ).toBe('token_request_failed');
  });

  it('lets each credential kind claim only rules of the identity table, and no rule twice', () => {
    const claimed = Object.values(credentialKinds).flatMap((kind) => kind.aadstsRules);
    const ruleCodes = aadstsRules.map((rule) => rule.code);
    for (const code of claimed) expect(ruleCodes, code).toContain(code);
    expect(new Set(claimed).size).toBe(claimed.length);
    // Re-reading a stored credential is for a refusal of that credential.
    for (const kind of Object.values(credentialKinds) as CredentialKind[])
      if (kind.stored !== undefined) expect(kind.aadstsRules).toContain(kind.stored.refusedRule);
  });
});
