import type { RelayConfig } from '../config.ts';
import { ensureRelayError } from '../errors.ts';
import type { HealthAlerts } from '../health/healthAlerts.ts';
import type { MailboxHealthRecord, MailboxHealthStore } from '../health/mailboxHealth.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import type { Housekeeping, HousekeepingReport, MigrationReport } from '../state/housekeeping.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import { type CredentialExpiry, describeCredentialExpiry } from '../tokens/credentialExpiry.ts';
import { credentialKindOf } from '../tokens/credentialKinds.ts';
import { requiresSignIn } from '../tokens/delegatedTokenSource.ts';

/**
 * What the tokenRefresh timer does: for every delegated mailbox that is not disconnected, force a refresh
 * through the same token pipeline sends use (so a concurrent send shares the request), which rotates the
 * refresh token and lets the cache plugin store it; then record the outcome per mailbox. Mailboxes are
 * refreshed independently: one failure never stops the others. Then the credential's expiry is checked,
 * every health state no alert has announced yet is announced, and the housekeeping removes expired state.
 * Two instances firing at once is harmless: each refresh returns a valid refresh token (Entra does not
 * revoke the previous one), each write is a complete new version, and announcements are claimed once.
 */
export interface MailboxRefreshOutcome {
  mailbox: string;
  ok: boolean;
  code?: string;
  aadsts?: string;
  needsConsent?: boolean;
  /** Disconnected by an administrator: not refreshed until someone connects it again. */
  disconnected?: boolean;
}

export interface RefreshReport {
  mailboxes: MailboxRefreshOutcome[];
  credential: CredentialExpiry;
  alertsSent: number;
  housekeeping: HousekeepingReport;
  /** Set on the run that moved an older relay's state out of Key Vault. */
  migration?: MigrationReport;
}

export interface TokenMaintenance {
  refreshAll(): Promise<RefreshReport>;
}

export function createTokenMaintenance(options: {
  directory: MailboxDirectory;
  tokens: MailboxTokenProvider;
  health: MailboxHealthStore;
  alerts: HealthAlerts;
  housekeeping: Housekeeping;
  /** Moves an older relay's state out of Key Vault, once (state/housekeeping.ts). */
  migrate: () => Promise<MigrationReport | undefined>;
  identity: RelayConfig['identity'];
  secrets: CachedSecretStore;
  now?: () => number;
}): TokenMaintenance {
  const now = options.now ?? Date.now;

  async function refreshOne(
    mailbox: string,
    record: MailboxHealthRecord | undefined,
  ): Promise<MailboxRefreshOutcome> {
    if (record?.disconnectedAt !== undefined) return { mailbox, ok: false, disconnected: true };
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
      const migration = await options.migrate().catch(() => undefined);
      const delegated = options.directory.delegatedMailboxes();
      // One query for every record; when storage is down the refresh still runs (and records fail below).
      const records = await options.health.readAll().catch(() => new Map<string, MailboxHealthRecord>());
      const settled = await Promise.allSettled(
        delegated.map((mailbox) => refreshOne(mailbox, records.get(mailbox.toLowerCase()))),
      );
      const mailboxes = settled.map((result, index) =>
        result.status === 'fulfilled'
          ? result.value
          : // Even recording the failure failed (the store is down): still report the mailbox.
            { mailbox: delegated[index] ?? '', ok: false, code: ensureRelayError(result.reason).code },
      );
      // Read from the store, not this instance's cache: an instance that sat idle would otherwise announce
      // the secret it read before a renewal, and the announcements would alternate between instances.
      const storedCredential = credentialKindOf(options.identity).stored;
      if (storedCredential !== undefined)
        options.secrets.invalidate(storedCredential.secretName(options.identity));
      const credential = await describeCredentialExpiry(options.identity, options.secrets, now());
      await options.alerts.credentialChecked(credential).catch(() => undefined);
      await options.alerts.idle();
      const alertsSent = await options.alerts.sweep().catch(() => 0);
      const housekeeping = await options.housekeeping.run();
      return {
        mailboxes,
        credential,
        alertsSent,
        housekeeping,
        ...(migration === undefined ? {} : { migration }),
      };
    },
  };
}
