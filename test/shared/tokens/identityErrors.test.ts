import { describe, expect, it } from 'vitest';
import { mapIdentityError } from '../../../shared/tokens/identityErrors.ts';

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
});
