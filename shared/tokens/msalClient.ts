import type { ConfidentialClientApplication, ICachePlugin } from '@azure/msal-node';
import type { RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import type { ClientCredential } from './clientCredential.ts';
import { credentialKindOf } from './credentialKinds.ts';
import { type IdentityErrorMapper, identityErrorMapper } from './identityErrors.ts';
import { loadMsal } from './loadMsal.ts';
import type { ClientAssertionSource } from './managedIdentityAssertion.ts';

/**
 * Builds MSAL's confidential client for delegated mailboxes: the configured authority, the app's credential
 * from the secret store, and the mailbox's persisted token cache. Every MSAL credential field the loaded
 * credential carries is passed on, so a new credential kind added in credentialKinds.ts works here too.
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
    throw new RelayError('relay_not_configured', {
      message: `The relay cannot get tokens: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set.`,
    });
  }
  return { tenantId: identity.tenantId, clientId: identity.clientId };
}

/**
 * MSAL clients over the app's current credential, for app-only and delegated tokens alike: a kept client
 * is rebuilt when the stored credential changes, so a rotated secret or certificate needs no restart.
 */
export interface ConfidentialClients {
  /** The client kept under `key` (one for app-only, one per delegated mailbox with its cache plugin). */
  clientFor(key: string, cachePlugin?: () => ICachePlugin): Promise<ConfidentialClientApplication>;
  /** A client with fresh in-memory state, not kept (e.g. for one authorization-code exchange). */
  newClient(cachePlugin?: ICachePlugin): Promise<ConfidentialClientApplication>;
  /** Turns what these clients' requests threw into a RelayError, knowing the app's credential type. */
  mapError: IdentityErrorMapper;
}

export function createConfidentialClients(
  identity: RelayConfig['identity'],
  secrets: SecretStore,
  federatedAssertion?: ClientAssertionSource,
): ConfidentialClients {
  const loadCredential = () => credentialKindOf(identity).load(identity, secrets, federatedAssertion);
  const kept = new Map<string, { fingerprint: string; application: ConfidentialClientApplication }>();
  return {
    async clientFor(key, cachePlugin) {
      const credential = await loadCredential();
      const existing = kept.get(key);
      if (existing?.fingerprint === credential.fingerprint) return existing.application;
      const application = await createConfidentialClient(identity, credential, cachePlugin?.());
      kept.set(key, { fingerprint: credential.fingerprint, application });
      return application;
    },
    async newClient(cachePlugin) {
      const credential = await loadCredential();
      return createConfidentialClient(identity, credential, cachePlugin);
    },
    mapError: identityErrorMapper(identity),
  };
}
