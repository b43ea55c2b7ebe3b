import type { MailboxMode, RelayConfig, SenderRouteRule } from '../config.ts';
import {
  type MailboxHealthError,
  type MailboxHealthRecord,
  type MailboxHealthStore,
  type MailboxState,
  problemStates,
} from '../health/mailboxHealth.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { type CredentialExpiry, describeCredentialExpiry } from '../tokens/credentialExpiry.ts';

/**
 * GET /api/status: each configured mailbox with its mode and health, when it was connected and last
 * refreshed, the last error and what to do. Built from the stored health (one query of the state table, no
 * Key Vault read per mailbox), so any instance answers the same. Never includes a token, a secret or a cache.
 */
export type { MailboxState };

export interface MailboxStatus {
  address: string;
  mode: MailboxMode;
  health: MailboxState;
  connectedAt?: string;
  disconnectedAt?: string;
  lastRefreshAt?: string;
  lastSuccessAt?: string;
  lastError?: MailboxHealthError;
  remedy?: string;
  consentUrl?: string;
}

/** A route of RELAY_SENDER_ROUTES with the state of each mailbox that signs in for it. */
export interface SenderRouteStatus {
  from: string;
  relation: SenderRouteRule['relation'];
  /** False while every sign-in mailbox needs a sign-in first (a pool sends through the members that can). */
  usable: boolean;
  signIn: MailboxStatus[];
}

export interface StatusReport {
  generatedAt: string;
  /** The expiry, and the last token request the credential itself made fail (cleared by the next success). */
  credential: CredentialExpiry & { lastError?: MailboxHealthError };
  defaultMode: MailboxMode;
  mailboxes: MailboxStatus[];
  senderRoutes: SenderRouteStatus[];
}

const cannotSignIn: ReadonlySet<MailboxState> = new Set(['not_connected', 'disconnected', 'needs_consent']);

export function createStatusReporter(options: {
  directory: MailboxDirectory;
  senderRoutes: readonly SenderRouteRule[];
  health: MailboxHealthStore;
  /** Runs before the first read of health (an older relay's state moves out of Key Vault). */
  migrate: () => Promise<unknown>;
  identity: RelayConfig['identity'];
  secrets: SecretStore;
  now?: () => number;
}): { report(): Promise<StatusReport> } {
  const now = options.now ?? Date.now;

  function mailboxStatus(address: string, mode: MailboxMode, record: MailboxHealthRecord | undefined) {
    const health = options.health.stateOf(address, record);
    const status: MailboxStatus = {
      address,
      mode,
      health,
      ...(record?.connectedAt === undefined ? {} : { connectedAt: record.connectedAt }),
      ...(record?.disconnectedAt === undefined ? {} : { disconnectedAt: record.disconnectedAt }),
      ...(record?.lastRefreshAt === undefined ? {} : { lastRefreshAt: record.lastRefreshAt }),
      ...(record?.lastSuccessAt === undefined ? {} : { lastSuccessAt: record.lastSuccessAt }),
      ...(record?.lastError === undefined ? {} : { lastError: record.lastError }),
    };
    if (cannotSignIn.has(health)) {
      const consentUrl = options.directory.consentStartUrl(address);
      return {
        ...status,
        remedy: `Open ${consentUrl} (with the function key) and sign in as ${address}.`,
        consentUrl,
      };
    }
    if (problemStates.has(health) && record?.lastError?.remedy !== undefined)
      return { ...status, remedy: record.lastError.remedy };
    return status;
  }

  return {
    async report() {
      await options.migrate().catch(() => undefined);
      const [records, expiry, credentialHealth] = await Promise.all([
        options.health.readAll(),
        describeCredentialExpiry(options.identity, options.secrets, now()),
        options.health.readCredential(),
      ]);
      const credential = {
        ...expiry,
        ...(credentialHealth?.lastError === undefined ? {} : { lastError: credentialHealth.lastError }),
      };
      const mailboxes = options.directory
        .listed()
        .map((rule) => mailboxStatus(rule.address, rule.mode, records.get(rule.address.toLowerCase())));
      // Every sign-in mailbox is listed (config.ts checks it), so each route reuses the statuses just read.
      const byAddress = new Map(mailboxes.map((status) => [status.address, status]));
      const senderRoutes = options.senderRoutes.map((rule): SenderRouteStatus => {
        const signIn = rule.signIn.flatMap((address) => byAddress.get(address) ?? []);
        return {
          from: rule.from,
          relation: rule.relation,
          usable: signIn.some((status) => !cannotSignIn.has(status.health)),
          signIn,
        };
      });
      return {
        generatedAt: new Date(now()).toISOString(),
        credential,
        defaultMode: 'app',
        mailboxes,
        senderRoutes,
      };
    },
  };
}
