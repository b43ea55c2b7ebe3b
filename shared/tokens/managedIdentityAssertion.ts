import type { TokenCredential } from '@azure/identity';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';

/**
 * The secretless app credential: the Function App's managed identity gets a token for the federated
 * identity credential's audience (api://AzureADTokenExchange), and MSAL hands that token to Entra ID as
 * the app's client assertion. Entra accepts it because the app registration trusts the identity
 * (issuer https://login.microsoftonline.com/<tenant>/v2.0, subject = the identity's object id).
 * @azure/identity caches the managed-identity token and renews it before it expires.
 */
export type ClientAssertionSource = () => Promise<string>;

export function createManagedIdentityAssertion(
  identity: Pick<RelayConfig['identity'], 'managedIdentityClientId' | 'federatedTokenAudience'>,
  credential: () => Promise<TokenCredential> = () =>
    managedIdentityCredential(identity.managedIdentityClientId),
): ClientAssertionSource {
  let shared: Promise<TokenCredential> | undefined;
  return async () => {
    shared ??= credential();
    try {
      const token = await (await shared).getToken(`${identity.federatedTokenAudience}/.default`);
      if (token === null || token.token === '') throw new Error('no token');
      return token.token;
    } catch (error) {
      throw managedIdentityFailed(error, identity.managedIdentityClientId);
    }
  };
}

/** Also the Key Vault credential in Azure: the same user-assigned identity, chosen by its client id. */
export async function managedIdentityCredential(clientId: string | undefined): Promise<TokenCredential> {
  // Loaded lazily, like MSAL: a large import a function that never needs it should not pay for.
  const { ManagedIdentityCredential } = await import('@azure/identity');
  return clientId === undefined
    ? new ManagedIdentityCredential()
    : new ManagedIdentityCredential({ clientId });
}

function managedIdentityFailed(error: unknown, clientId: string | undefined): RelayError {
  // The library's message can quote the endpoint's answer; only the error's class name is passed on.
  const name = error instanceof Error ? error.name : typeof error;
  return new RelayError('managed_identity_failed', {
    message: `The Function App's managed identity${clientId === undefined ? '' : ` (client id ${clientId})`} could not issue the federated client assertion (${name}).`,
    details: { identityError: name },
  });
}
