import type { RelayConfig } from '../config.ts';
import { ensureRelayError } from '../errors.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import type { PendingConsents } from '../oauth/pendingConsents.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import { type CredentialExpiry, describeCredentialExpiry } from '../tokens/credentialExpiry.ts';
import { requiresSignIn } from '../tokens/delegatedTokenSource.ts';
import type { MailboxHealthStore } from './mailboxHealth.ts';

/**
 * What the tokenRefresh timer does: for every delegated mailbox, force a refresh through the same token
 * pipeline sends use (so a concurrent send shares the request), which rotates the refresh token and lets
 * the cache plugin store it; then record the outcome per mailbox. Mailboxes are refreshed independently:
 * one failure never stops the others. Two instances firing at once is harmless: each refresh returns a
 * valid refresh token (Entra does not revoke the previous one), each write is a complete new version, and
 * health records say the same thing.
 */
export interface MailboxRefreshOutcome {
  mailbox: string;
  ok: boolean;
  code?: string;
  aadsts?: string;
  needsConsent?: boolean;
}

export interface RefreshReport {
  mailboxes: MailboxRefreshOutcome[];
  credential: CredentialExpiry;
  expiredConsentsDeleted: number;
}

export interface TokenMaintenance {
  refreshAll(): Promise<RefreshReport>;
}

export function createTokenMaintenance(options: {
  directory: MailboxDirectory;
  tokens: MailboxTokenProvider;
  health: MailboxHealthStore;
  pending: PendingConsents;
  identity: RelayConfig['identity'];
  secrets: SecretStore;
  now?: () => number;
}): TokenMaintenance {
  const now = options.now ?? Date.now;

  async function refreshOne(mailbox: string): Promise<MailboxRefreshOutcome> {
    try {
      await options.tokens(mailbox, { forceRefresh: true });
      await options.health.recordRefresh(mailbox, new Date(now()));
      return { mailbox, ok: true };
    } catch (error) {
      const relayError = ensureRelayError(error);
      const needsConsent = requiresSignIn(relayError);
      await options.health.recordFailure(mailbox, new Date(now()), relayError, needsConsent);
      const aadsts = (relayError.details as Record<string, unknown> | undefined)?.aadsts;
      return {
        mailbox,
        ok: false,
        code: relayError.code,
        ...(typeof aadsts === 'string' ? { aadsts } : {}),
        needsConsent,
      };
    }
  }

  return {
    async refreshAll() {
      const settled = await Promise.allSettled(options.directory.delegatedMailboxes().map(refreshOne));
      const mailboxes = settled.map((result, index) =>
        result.status === 'fulfilled'
          ? result.value
          : // Even recording the failure failed (the store is down): still report the mailbox.
            {
              mailbox: options.directory.delegatedMailboxes()[index] ?? '',
              ok: false,
              code: ensureRelayError(result.reason).code,
            },
      );
      const [credential, expiredConsentsDeleted] = await Promise.all([
        describeCredentialExpiry(options.identity, options.secrets, now()),
        options.pending.deleteExpired().catch(() => 0),
      ]);
      return { mailboxes, credential, expiredConsentsDeleted };
    },
  };
}
