import type { AccountInfo, ConfidentialClientApplication } from '@azure/msal-node';
import { isTenantGuid, type RelayConfig } from '../config.ts';
import { RelayError } from '../errors.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import type { TokenSource } from './accessToken.ts';
import { type IdentityErrorMapper, needsConsent } from './identityErrors.ts';
import { createConfidentialClients } from './msalClient.ts';
import { createTokenCachePlugin, tokenCacheSecretName } from './tokenCachePlugin.ts';

/**
 * Delegated tokens (scope https://outlook.office.com/SMTP.Send) for mailboxes whose owner connected them
 * through /api/oauth/start. Each mailbox has its own MSAL client whose cache lives in the secret store
 * (tokenCachePlugin.ts); a token comes from acquireTokenSilent with the persisted account, which uses the
 * refresh token when the access token is stale or when a refresh is forced. This is only a TokenSource:
 * the shared token cache in front of it (mailboxTokens.ts) adds the margin and single flight.
 */
export interface DelegatedClients {
  /** The mailbox's long-lived client, rebuilt when the app's credential changes. */
  clientFor(mailbox: string): Promise<ConfidentialClientApplication>;
  /** A client with fresh in-memory state over the same store, for one code exchange. */
  newClientFor(mailbox: string): Promise<ConfidentialClientApplication>;
  /** What these clients' token requests threw, as a RelayError for the app's credential type. */
  mapError: IdentityErrorMapper;
}

export function createDelegatedClients(
  identity: RelayConfig['identity'],
  scope: string,
  secrets: CachedSecretStore,
): DelegatedClients {
  const clients = createConfidentialClients(identity, secrets);
  const tenantId =
    identity.tenantId !== undefined && isTenantGuid(identity.tenantId) ? identity.tenantId : undefined;
  const cachePluginFor = (mailbox: string) =>
    createTokenCachePlugin({ secrets, mailbox, scope, ...(tenantId === undefined ? {} : { tenantId }) });
  return {
    clientFor(mailbox) {
      const key = mailbox.toLowerCase();
      return clients.clientFor(key, () => cachePluginFor(key));
    },
    newClientFor(mailbox) {
      return clients.newClient(cachePluginFor(mailbox.toLowerCase()));
    },
    mapError: clients.mapError,
  };
}

export async function findMailboxAccount(
  client: ConfidentialClientApplication,
  mailbox: string,
): Promise<AccountInfo | undefined> {
  const accounts = await client.getTokenCache().getAllAccounts();
  return accounts.find((account) => account.username.toLowerCase() === mailbox.toLowerCase());
}

export function createDelegatedTokenSource(options: {
  clients: DelegatedClients;
  scope: string;
  secrets: CachedSecretStore;
  directory: MailboxDirectory;
}): TokenSource {
  const { clients, scope, secrets, directory } = options;

  return async (mailbox, { forceRefresh }) => {
    try {
      const client = await clients.clientFor(mailbox);
      const account = await findMailboxAccount(client, mailbox);
      if (account === undefined) throw mailboxNotConnected(mailbox, directory.consentStartUrl(mailbox));
      const result = await client.acquireTokenSilent({ account, scopes: [scope], forceRefresh });
      if (result === null || result.accessToken === '' || result.expiresOn === null) {
        throw new RelayError('token_request_failed', {
          message: `The identity provider returned no access token for ${mailbox}.`,
        });
      }
      return { accessToken: result.accessToken, expiresOn: result.expiresOn };
    } catch (error) {
      const mapped = clients.mapError(error);
      if (!needsConsent(mapped) && mapped.code !== 'token_cache_too_large') throw mapped;
      // Another instance may reconnect the mailbox: the next attempt reads the stored cache afresh.
      secrets.invalidate(tokenCacheSecretName(mailbox));
      throw withConsentRemedy(mapped, mailbox, directory.consentStartUrl(mailbox));
    }
  };
}

export function mailboxNotConnected(
  mailbox: string,
  consentUrl: string,
  why: 'never' | 'disconnected' = 'never',
): RelayError {
  return new RelayError('mailbox_not_connected', {
    message:
      why === 'disconnected'
        ? `The delegated mailbox ${mailbox} was disconnected by an administrator: the relay no longer signs in as it.`
        : `The delegated mailbox ${mailbox} has not been connected: the relay holds no sign-in for it.`,
    remedy: `Open ${consentUrl} (with the function key) and sign in as ${mailbox}.`,
    details: { mailbox, consentUrl },
  });
}

/** True for errors only the mailbox owner can fix by signing in again. */
export function requiresSignIn(error: RelayError): boolean {
  return (
    needsConsent(error) || error.code === 'mailbox_not_connected' || error.code === 'token_cache_too_large'
  );
}

function withConsentRemedy(error: RelayError, mailbox: string, consentUrl: string): RelayError {
  return new RelayError(error.code, {
    message: `${error.message} The mailbox ${mailbox} must be connected again.`,
    remedy: `Open ${consentUrl} (with the function key) and sign in as ${mailbox}.`,
    details: { ...(error.details as Record<string, unknown> | undefined), mailbox, consentUrl },
  });
}
