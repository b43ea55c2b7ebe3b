import type { MailboxMode, RelayConfig, SenderRouteRule } from '../config.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { type CredentialExpiry, describeCredentialExpiry } from '../tokens/credentialExpiry.ts';
import { tokenCacheSecretName } from '../tokens/tokenCachePlugin.ts';
import type { MailboxHealthError, MailboxHealthStore } from './mailboxHealth.ts';

/**
 * GET /api/status: each configured mailbox with its mode and, for delegated ones, whether it is connected,
 * when it was last refreshed, the last error and what to do. Built from what the store holds, so any
 * instance answers the same. Never includes a token, a secret or a cache.
 */
export type MailboxState = 'app-only' | 'healthy' | 'not_connected' | 'needs_consent' | 'failing';

export interface MailboxStatus {
  address: string;
  mode: MailboxMode;
  health: MailboxState;
  connectedAt?: string;
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
  credential: CredentialExpiry;
  defaultMode: MailboxMode;
  mailboxes: MailboxStatus[];
  senderRoutes: SenderRouteStatus[];
}

export function createStatusReporter(options: {
  directory: MailboxDirectory;
  senderRoutes: readonly SenderRouteRule[];
  health: MailboxHealthStore;
  identity: RelayConfig['identity'];
  secrets: SecretStore;
  now?: () => number;
}): { report(): Promise<StatusReport> } {
  const now = options.now ?? Date.now;

  async function delegatedStatus(address: string): Promise<MailboxStatus> {
    const [record, cache] = await Promise.all([
      options.health.read(address),
      options.secrets.getSecret(tokenCacheSecretName(address)),
    ]);
    const consentUrl = options.directory.consentStartUrl(address);
    const signInRemedy = `Open ${consentUrl} (with the function key) and sign in as ${address}.`;
    const times = {
      ...(record?.connectedAt === undefined ? {} : { connectedAt: record.connectedAt }),
      ...(record?.lastRefreshAt === undefined ? {} : { lastRefreshAt: record.lastRefreshAt }),
      ...(record?.lastSuccessAt === undefined ? {} : { lastSuccessAt: record.lastSuccessAt }),
    };
    if (cache === undefined) {
      return {
        address,
        mode: 'delegated',
        health: 'not_connected',
        ...times,
        remedy: signInRemedy,
        consentUrl,
      };
    }
    if (record?.needsConsent === true) {
      return {
        address,
        mode: 'delegated',
        health: 'needs_consent',
        ...times,
        ...(record.lastError === undefined ? {} : { lastError: record.lastError }),
        remedy: signInRemedy,
        consentUrl,
      };
    }
    if (record?.lastError !== undefined) {
      return {
        address,
        mode: 'delegated',
        health: 'failing',
        ...times,
        lastError: record.lastError,
        ...(record.lastError.remedy === undefined ? {} : { remedy: record.lastError.remedy }),
      };
    }
    return { address, mode: 'delegated', health: 'healthy', ...times };
  }

  return {
    async report() {
      const mailboxes = await Promise.all(
        options.directory
          .listed()
          .map((rule) =>
            rule.mode === 'delegated'
              ? delegatedStatus(rule.address)
              : Promise.resolve<MailboxStatus>({ address: rule.address, mode: 'app', health: 'app-only' }),
          ),
      );
      // Every sign-in mailbox is listed (config.ts checks it), so each route reuses the statuses just read.
      const byAddress = new Map(mailboxes.map((status) => [status.address, status]));
      const senderRoutes = options.senderRoutes.map((rule): SenderRouteStatus => {
        const signIn = rule.signIn.flatMap((address) => byAddress.get(address) ?? []);
        return {
          from: rule.from,
          relation: rule.relation,
          usable: signIn.some(
            (status) => status.health !== 'not_connected' && status.health !== 'needs_consent',
          ),
          signIn,
        };
      });
      return {
        generatedAt: new Date(now()).toISOString(),
        credential: await describeCredentialExpiry(options.identity, options.secrets, now()),
        defaultMode: 'app',
        mailboxes,
        senderRoutes,
      };
    },
  };
}
