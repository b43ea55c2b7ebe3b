import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import type { AccessToken, TokenSource } from './accessToken.ts';
import { credentialKindOf } from './credentialKinds.ts';
import type { ClientAssertionSource } from './managedIdentityAssertion.ts';
import { createConfidentialClients } from './msalClient.ts';

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
  /** For a federated credential; by default the Function App's managed identity (clientCredential.ts). */
  federatedAssertion?: ClientAssertionSource,
): TokenSource {
  const clients = createConfidentialClients(identity, secrets, federatedAssertion);

  async function requestToken(forceRefresh: boolean): Promise<AccessToken> {
    const application = await clients.clientFor('app');
    const result = await application.acquireTokenByClientCredential({
      scopes: [scope],
      skipCache: forceRefresh,
    });
    if (result === null || result.accessToken === '' || result.expiresOn === null) {
      throw new RelayError('token_request_failed', {
        message: 'The identity provider returned no access token.',
      });
    }
    return { accessToken: result.accessToken, expiresOn: result.expiresOn };
  }

  return async (_mailbox, options) => {
    try {
      return await requestToken(options.forceRefresh);
    } catch (error) {
      const mapped = clients.mapError(error);
      const { stored } = credentialKindOf(identity);
      if (stored === undefined || mapped.code !== stored.refusedRule) throw mapped;
      // The cached credential may be one an administrator has just rotated: read it afresh once.
      secrets.invalidate(stored.secretName(identity));
      try {
        return await requestToken(true);
      } catch (retryError) {
        throw clients.mapError(retryError);
      }
    }
  };
}
