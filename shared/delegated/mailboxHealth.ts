import type { RelayError } from '../errors.ts';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import { mailboxSecretName, mailboxTag } from '../secrets/secretNames.ts';

/**
 * What the relay last learned about each delegated mailbox's sign-in. Kept in the secret store, one small
 * secret per mailbox (tagged with the address), because every Function instance and /api/status must see
 * the same record, the store is the one thing all instances already share, and a separate secret means a
 * health write can never replace a token cache with an older copy. Writes happen a few times a day per
 * mailbox (timer, consent), far below Key Vault's limits.
 */
export const healthPurpose = 'mailbox-health';

export interface MailboxHealthError {
  code: string;
  message: string;
  /** e.g. AADSTS700082 */
  aadsts?: string;
  remedy?: string;
  at: string;
}

export interface MailboxHealthRecord {
  mailbox: string;
  connectedAt?: string;
  lastRefreshAt?: string;
  lastSuccessAt?: string;
  lastError?: MailboxHealthError;
  /** Only a new sign-in through /api/oauth/start can fix it. */
  needsConsent: boolean;
}

export interface MailboxHealthStore {
  read(mailbox: string): Promise<MailboxHealthRecord | undefined>;
  recordConnected(mailbox: string, at: Date): Promise<void>;
  recordRefresh(mailbox: string, at: Date): Promise<void>;
  recordFailure(mailbox: string, at: Date, error: RelayError, needsConsent: boolean): Promise<void>;
}

export function healthSecretName(mailbox: string): string {
  return mailboxSecretName(healthPurpose, mailbox);
}

export function createMailboxHealthStore(secrets: CachedSecretStore): MailboxHealthStore {
  async function read(mailbox: string): Promise<MailboxHealthRecord | undefined> {
    const name = healthSecretName(mailbox);
    // Another instance may have written it: health is always read from the store itself.
    secrets.invalidate(name);
    const stored = await secrets.getSecret(name);
    if (stored === undefined) return undefined;
    try {
      return JSON.parse(stored.value) as MailboxHealthRecord;
    } catch {
      return undefined;
    }
  }

  async function write(record: MailboxHealthRecord): Promise<void> {
    await secrets.setSecret(healthSecretName(record.mailbox), JSON.stringify(record), {
      tags: {
        [mailboxTag]: record.mailbox,
        purpose: healthPurpose,
        state: record.needsConsent ? 'needs-consent' : record.lastError === undefined ? 'healthy' : 'failing',
      },
      contentType: 'application/json',
    });
  }

  return {
    read,
    async recordConnected(mailbox, at) {
      const previous = await read(mailbox);
      await write({
        ...previous,
        mailbox,
        connectedAt: at.toISOString(),
        lastSuccessAt: at.toISOString(),
        lastError: undefined,
        needsConsent: false,
      });
    },
    async recordRefresh(mailbox, at) {
      const previous = await read(mailbox);
      await write({
        ...previous,
        mailbox,
        lastRefreshAt: at.toISOString(),
        lastSuccessAt: at.toISOString(),
        lastError: undefined,
        needsConsent: false,
      });
    },
    async recordFailure(mailbox, at, error, needsConsent) {
      const previous = await read(mailbox);
      const aadsts = (error.details as Record<string, unknown> | undefined)?.aadsts;
      await write({
        ...previous,
        mailbox,
        lastRefreshAt: at.toISOString(),
        lastError: {
          code: error.code,
          message: error.message,
          ...(typeof aadsts === 'string' ? { aadsts } : {}),
          ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
          at: at.toISOString(),
        },
        needsConsent,
      });
    },
  };
}
