import type { ConfidentialClientApplication } from '@azure/msal-node';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import type { AccessToken, TokenSource } from './accessToken.ts';
import { type ClientCredential, loadClientCredential } from './clientCredential.ts';
import { mapIdentityError } from './identityErrors.ts';
import { loadMsal } from './loadMsal.ts';

/**
 * App-only tokens by client credentials (scope https://outlook.office365.com/.default, app role
 * SMTP.SendAsApp). One token serves every mailbox the service principal was granted in Exchange, so the
 * mailbox argument is not part of the request; the relay's caller rules decide who may use which sender.
 * The MSAL client is rebuilt when the stored credential changes (rotation needs no restart).
 */
export function createAppOnlyTokenSource(
  identity: RelayConfig['identity'],
  scope: string,
  secrets: CachedSecretStore,
): TokenSource {
  let client: { fingerprint: string; application: ConfidentialClientApplication } | undefined;

  async function clientFor(credential: ClientCredential): Promise<ConfidentialClientApplication> {
    if (client?.fingerprint === credential.fingerprint) return client.application;
    const { tenantId, clientId } = requireAppIdentity(identity);
    const authorityUrl = new URL(identity.authorityHost);
    // MSAL loaded lazily: it is a large import and cold start matters for a consumption plan.
    const { ConfidentialClientApplication: Application } = loadMsal();
    const application = new Application({
      auth: {
        clientId,
        authority: `${identity.authorityHost}/${tenantId}`,
        // Without this MSAL asks login.microsoftonline.com for instance discovery of non-public hosts.
        knownAuthorities: [authorityUrl.host],
        ...(credential.clientSecret === undefined ? {} : { clientSecret: credential.clientSecret }),
        ...(credential.clientCertificate === undefined
          ? {}
          : { clientCertificate: credential.clientCertificate }),
      },
    });
    client = { fingerprint: credential.fingerprint, application };
    return application;
  }

  async function requestToken(forceRefresh: boolean): Promise<AccessToken> {
    const credential = await loadClientCredential(identity, secrets);
    const application = await clientFor(credential);
    const result = await application.acquireTokenByClientCredential({
      scopes: [scope],
      skipCache: forceRefresh,
    });
    if (result === null || result.accessToken === '' || result.expiresOn === null) {
      throw new RelayError({
        code: 'token_request_failed',
        status: 502,
        message: 'The identity provider returned no access token.',
      });
    }
    return { accessToken: result.accessToken, expiresOn: result.expiresOn };
  }

  return async (_mailbox, options) => {
    try {
      return await requestToken(options.forceRefresh);
    } catch (error) {
      const mapped = mapIdentityError(error, { authorityHost: identity.authorityHost });
      if (mapped.code !== 'client_secret_invalid' && mapped.code !== 'client_certificate_invalid')
        throw mapped;
      // The cached credential may be one an administrator has just rotated: read it afresh once.
      secrets.invalidate(
        identity.credentialType === 'secret' ? identity.clientSecretName : identity.clientCertificateName,
      );
      try {
        return await requestToken(true);
      } catch (retryError) {
        throw mapIdentityError(retryError, { authorityHost: identity.authorityHost });
      }
    }
  };
}

function requireAppIdentity(identity: RelayConfig['identity']): { tenantId: string; clientId: string } {
  const missing = [
    ...(identity.tenantId === undefined ? ['RELAY_TENANT_ID'] : []),
    ...(identity.clientId === undefined ? ['RELAY_CLIENT_ID'] : []),
  ];
  if (identity.tenantId === undefined || identity.clientId === undefined) {
    throw new RelayError({
      code: 'relay_not_configured',
      status: 500,
      message: `The relay cannot get tokens: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set.`,
      remedy:
        'Set them to the Directory (tenant) ID and Application (client) ID of the Entra app registration.',
    });
  }
  return { tenantId: identity.tenantId, clientId: identity.clientId };
}
