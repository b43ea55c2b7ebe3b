import type { ConfidentialClientApplication, ICachePlugin } from '@azure/msal-node';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import type { ClientCredential } from './clientCredential.ts';
import { loadMsal } from './loadMsal.ts';

/**
 * Builds MSAL's confidential client for delegated mailboxes: the configured authority, the app's credential
 * from the secret store, and the mailbox's persisted token cache. Every MSAL credential field the loaded
 * credential carries is passed on, so a new credential kind added in clientCredential.ts works here too.
 */
export async function createConfidentialClient(
  identity: RelayConfig['identity'],
  credential: ClientCredential,
  cachePlugin?: ICachePlugin,
): Promise<ConfidentialClientApplication> {
  const { tenantId, clientId } = requireAppIdentity(identity);
  const { fingerprint: _fingerprint, expiresOn: _expiresOn, ...msalCredential } = credential;
  const authorityUrl = new URL(identity.authorityHost);
  // MSAL loaded lazily, from its single-file bundle: cold start matters for a consumption plan.
  const { ConfidentialClientApplication: Application } = loadMsal();
  return new Application({
    auth: {
      clientId,
      authority: `${identity.authorityHost}/${tenantId}`,
      // Without this MSAL asks login.microsoftonline.com for instance discovery of non-public hosts.
      knownAuthorities: [authorityUrl.host],
      ...msalCredential,
    },
    ...(cachePlugin === undefined ? {} : { cache: { cachePlugin } }),
  });
}

export function requireAppIdentity(identity: RelayConfig['identity']): {
  tenantId: string;
  clientId: string;
} {
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
