import type { TableClient } from '@azure/data-tables';
import type { MailboxHealthRecord } from '../health/mailboxHealth.ts';
import { IDEMPOTENCY_WINDOW_MS } from '../idempotency/idempotencyStore.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import { mailboxTag } from '../secrets/secretNames.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { withStorage } from '../storage/storageErrors.ts';
import { removeRowsWhere } from '../storage/tableRows.ts';
import { tokenCachePurpose } from '../tokens/tokenCachePlugin.ts';
import type { StateTable } from './stateTable.ts';

/**
 * What the tokenRefresh timer removes so the relay's state does not grow forever: state rows past their
 * expiry (sign-ins nobody finished), idempotency keys older than their 24-hour window, and the status rows
 * of queued messages settled more than a week ago (the queue's own messages live at most 7 days). Each
 * part runs on its own: one that fails is reported and the others still run.
 */
export const settledStatusRetentionMs = 7 * 24 * 60 * 60 * 1000;

export interface HousekeepingReport {
  expiredStateRows: number;
  idempotencyKeysRemoved: number;
  settledStatusesRemoved: number;
  /** Parts that could not run, with why. */
  problems: string[];
}

export interface Housekeeping {
  run(): Promise<HousekeepingReport>;
}

export interface HousekeepingTables {
  idempotencyKeys: TableClient;
  statuses: TableClient;
  ready(): Promise<void>;
}

export function createHousekeeping(options: {
  state: StateTable;
  /** The storage tables, built when the timer runs; undefined when this relay uses none (state in memory, no queue). */
  tables: () => HousekeepingTables | undefined;
  now?: () => number;
}): Housekeeping {
  const now = options.now ?? Date.now;
  return {
    async run() {
      const problems: string[] = [];
      const attempt = async <T>(part: string, work: () => Promise<T>, otherwise: T): Promise<T> => {
        try {
          return await work();
        } catch (error) {
          problems.push(`${part}: ${error instanceof Error ? error.message : String(error)}`);
          return otherwise;
        }
      };
      const expiredStateRows = await attempt('expired state', () => options.state.removeExpired(now()), 0);
      const idempotencyKeysRemoved = await attempt(
        'idempotency keys',
        async () => {
          const tables = options.tables();
          if (tables === undefined) return 0;
          await withStorage(tables.ready);
          const { idempotencyKeys } = tables;
          // createdAt is milliseconds as 13-digit text, so text order is time order.
          const cutoff = String(now() - IDEMPOTENCY_WINDOW_MS).padStart(13, '0');
          return removeRowsWhere(idempotencyKeys, `createdAt lt '${cutoff}'`);
        },
        0,
      );
      const settledStatusesRemoved = await attempt(
        'settled statuses',
        async () => {
          const tables = options.tables();
          if (tables === undefined) return 0;
          await withStorage(tables.ready);
          const { statuses } = tables;
          const cutoff = new Date(now() - settledStatusRetentionMs).toISOString();
          return removeRowsWhere(
            statuses,
            `(state eq 'sent' or state eq 'failed') and updatedAt lt '${cutoff}'`,
          );
        },
        0,
      );
      return {
        expiredStateRows,
        idempotencyKeysRemoved,
        settledStatusesRemoved,
        problems,
      };
    },
  };
}

/**
 * Relays before this version kept mailbox health (`mailbox-health-*`) and pending sign-ins
 * (`oauth-pending-*`) as Key Vault secrets. Once per deployment (a `migration` row records it), each health
 * record is copied into the state table unless a newer row exists, a delegated mailbox with a stored token
 * cache but no record is recorded as connected, and the old secrets are deleted (a sign-in under way during
 * the upgrade has to be started again). Running it twice changes nothing; a run cut short runs again.
 * Each process runs it before it first reads health (status, health, timer) and remembers that it did.
 */
export interface MigrationReport {
  healthRecordsCopied: number;
  connectionsRecorded: number;
  oldSecretsDeleted: number;
}

const migrationKey = 'key-vault-state-v1';
const legacyHealthPurpose = 'mailbox-health';
const legacyPendingPurpose = 'oauth-pending';

export function createKeyVaultMigration(options: {
  state: StateTable;
  secrets: SecretStore;
  directory: MailboxDirectory;
  now?: () => number;
}): () => Promise<MigrationReport | undefined> {
  const { state, secrets, directory } = options;
  const now = options.now ?? Date.now;
  let done: Promise<MigrationReport | undefined> | undefined;
  const migrate = async (): Promise<MigrationReport | undefined> => {
    if ((await state.read('migration', migrationKey)) !== undefined) return undefined;
    const report: MigrationReport = { healthRecordsCopied: 0, connectionsRecorded: 0, oldSecretsDeleted: 0 };
    const listed = await secrets.listSecrets();
    const cached = new Map(
      listed
        .filter((properties) => properties.tags.purpose === tokenCachePurpose)
        .map((properties) => [properties.tags[mailboxTag]?.toLowerCase() ?? '', properties]),
    );
    for (const secret of listed.filter((properties) => properties.tags.purpose === legacyHealthPurpose)) {
      const stored = await secrets.getSecret(secret.name);
      const record = parseRecord(stored?.value);
      const mode = record === undefined ? undefined : directory.listedModeOf(record.mailbox);
      if (record === undefined || mode === undefined) continue;
      const { announced: _none, ...copied } = record;
      // The old docs disconnected a mailbox by deleting its token cache: without one it is disconnected.
      const migrated: MailboxHealthRecord =
        mode === 'delegated' && !cached.has(record.mailbox)
          ? {
              ...copied,
              disconnectedAt: new Date(now()).toISOString(),
              lastError: undefined,
              needsConsent: false,
            }
          : copied;
      if ((await state.insert('mailbox', record.mailbox, migrated)) !== undefined)
        report.healthRecordsCopied += 1;
    }
    for (const mailbox of directory.delegatedMailboxes()) {
      const cache = cached.get(mailbox.toLowerCase());
      if (cache === undefined) continue;
      const connectedAt = (cache.updatedOn ?? new Date(now())).toISOString();
      const record: MailboxHealthRecord = {
        mailbox: mailbox.toLowerCase(),
        connectedAt,
        needsConsent: false,
      };
      if ((await state.insert('mailbox', record.mailbox, record)) !== undefined)
        report.connectionsRecorded += 1;
    }
    for (const secret of listed) {
      const purpose = secret.tags.purpose;
      if (purpose !== legacyHealthPurpose && purpose !== legacyPendingPurpose) continue;
      await secrets.deleteSecret(secret.name);
      report.oldSecretsDeleted += 1;
    }
    await state.insert('migration', migrationKey, { at: new Date(now()).toISOString(), ...report });
    return report;
  };
  return () => {
    done ??= migrate();
    // A failed run (the vault or storage briefly down) is tried again by the next caller.
    done.catch(() => {
      done = undefined;
    });
    return done;
  };
}

function parseRecord(value: string | undefined): MailboxHealthRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const record = JSON.parse(value) as MailboxHealthRecord;
    return typeof record.mailbox === 'string'
      ? { ...record, mailbox: record.mailbox.toLowerCase() }
      : undefined;
  } catch {
    return undefined;
  }
}
