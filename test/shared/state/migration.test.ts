import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import {
  createMailboxHealthStore,
  type MailboxHealthRecord,
  type MailboxHealthStore,
} from '../../../shared/health/mailboxHealth.ts';
import { createMailboxDirectory, type MailboxDirectory } from '../../../shared/mailboxes.ts';
import { createRuntime, type Runtime } from '../../../shared/runtime.ts';
import {
  type CachedSecretStore,
  createCachedSecretStore,
} from '../../../shared/secrets/cachedSecretStore.ts';
import { createKeyVaultSecretStore } from '../../../shared/secrets/keyVaultSecretStore.ts';
import { mailboxSecretName } from '../../../shared/secrets/secretNames.ts';
import type { SecretStore } from '../../../shared/secrets/secretStore.ts';
import { sha256 } from '../../../shared/sha256.ts';
import { createKeyVaultMigration, type MigrationReport } from '../../../shared/state/housekeeping.ts';
import { createMemoryStateTable, type StateTable } from '../../../shared/state/stateTable.ts';
import { tokenCacheSecretName } from '../../../shared/tokens/tokenCachePlugin.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../../peers/keyVaultPeer.ts';

/**
 * The one-time move of an older relay's state out of Key Vault, against the Key Vault peer through the
 * real SecretClient. The vault is seeded with what that relay left: one `mailbox-health-…` secret per
 * delegated mailbox (a new version every 6 hours), `oauth-pending-…` secrets of sign-ins under way, and
 * the MSAL token caches, which stay. Afterwards the health lives in the state table, the old secrets are
 * soft-deleted, and a second run touches the vault not at all.
 */
const vaultCredential = {
  getToken: async () => ({ token: 'vault-access-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
};
const appClientSecret = 'app-client-secret-value-never-logged';
const publicBaseUrl = 'https://relay.contoso.com';

async function openVaultStore(vault: KeyVaultPeer): Promise<SecretStore> {
  return createKeyVaultSecretStore({
    vaultUrl: vault.vaultUrl,
    credential: vaultCredential,
    // Three attempts per request, retried at once: a scripted outage of three answers fails one call.
    clientOptions: {
      disableChallengeResourceVerification: true,
      retryOptions: { maxRetries: 2, retryDelayInMs: 10, maxRetryDelayInMs: 50 },
    },
    recoveryPollIntervalMs: 1,
  });
}

/** What an older relay wrote as a mailbox's health, one new version per timer run. */
function seedLegacyHealth(vault: KeyVaultPeer, ...versions: MailboxHealthRecord[]): string {
  const mailbox = versions[0]?.mailbox ?? '';
  const name = mailboxSecretName('mailbox-health', mailbox);
  for (const record of versions)
    vault.putSecretDirect(name, JSON.stringify(record), {
      tags: { mailbox, purpose: 'mailbox-health' },
      contentType: 'application/json',
    });
  return name;
}

/** A sign-in an older relay had started when it was upgraded. */
function seedLegacyPendingConsent(vault: KeyVaultPeer, mailbox: string): string {
  const name = `oauth-pending-${sha256(randomBytes(32).toString('base64url')).slice(0, 40)}`;
  vault.putSecretDirect(
    name,
    JSON.stringify({
      mailbox,
      codeVerifier: `pkce-verifier-${randomBytes(16).toString('hex')}`,
      nonce: randomBytes(16).toString('hex'),
      browserBindingSha256: sha256('browser'),
      expiresAt: Date.now() + 300_000,
    }),
    {
      tags: { mailbox, purpose: 'oauth-pending', expiresAt: new Date(Date.now() + 300_000).toISOString() },
      contentType: 'application/json',
    },
  );
  return name;
}

const refreshTokenOf = (mailbox: string) => `refresh-token-of-${mailbox}-never-shown`;

/** MSAL's serialized cache as the token cache plugin stores it, with a refresh token that must stay secret. */
function seedTokenCache(vault: KeyVaultPeer, mailbox: string): string {
  const name = tokenCacheSecretName(mailbox);
  vault.putSecretDirect(
    name,
    JSON.stringify({
      Account: {},
      IdToken: {},
      AccessToken: {},
      RefreshToken: {
        [`rt-${mailbox}`]: { credential_type: 'RefreshToken', secret: refreshTokenOf(mailbox) },
      },
      AppMetadata: {},
    }),
    { tags: { mailbox, purpose: 'msal-cache' } },
  );
  return name;
}

/** The peer's record of the secret: deleted, yet kept and recoverable, as soft delete does. */
function softDeleted(vault: KeyVaultPeer, name: string): boolean {
  return vault.secretValue(name) === undefined && vault.secretVersions(name).length > 0;
}

/** The SDK sends whole seconds, so the relay sees a secret's updatedOn without milliseconds. */
const asListed = (date: Date) => new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString();

const days = (count: number) => count * 24 * 60 * 60 * 1000;
const at = (daysAgo: number) => new Date(Date.now() - days(daysAgo)).toISOString();

describe("moving an older relay's state out of Key Vault", () => {
  let vault: KeyVaultPeer;
  let secrets: CachedSecretStore;
  let runtime: Runtime;
  let health: MailboxHealthStore;
  let report: MigrationReport | undefined;
  let requestsBeforeMigration: number;
  let requestsAfterMigration: number;
  const seeded: Record<string, string> = {};

  const healthy: MailboxHealthRecord = {
    mailbox: 'shared@contoso.com',
    connectedAt: at(60),
    lastRefreshAt: at(0.25),
    lastSuccessAt: at(0.25),
    needsConsent: false,
  };
  const signInExpired: MailboxHealthRecord = {
    mailbox: 'expired@contoso.com',
    connectedAt: at(120),
    lastRefreshAt: at(0.1),
    lastSuccessAt: at(30),
    lastError: {
      code: 'mailbox_needs_consent',
      message: 'The refresh token expired (AADSTS700082): the mailbox must sign in again.',
      aadsts: 'AADSTS700082',
      at: at(0.1),
    },
    needsConsent: true,
  };
  const cacheDeletedByAnAdministrator: MailboxHealthRecord = {
    mailbox: 'signedout@contoso.com',
    connectedAt: at(40),
    lastRefreshAt: at(3),
    lastSuccessAt: at(3),
    needsConsent: false,
  };

  beforeAll(async () => {
    vault = await startKeyVaultPeer();
    const vaultStore = await openVaultStore(vault);
    vault.putSecretDirect('relay-client-secret', appClientSecret, {
      contentType: 'text/plain',
      expiresOn: new Date(Date.now() + days(200)),
    });
    seeded.healthyHealth = seedLegacyHealth(
      vault,
      { ...healthy, lastRefreshAt: at(0.75), lastSuccessAt: at(0.75) },
      { ...healthy, lastRefreshAt: at(0.5), lastSuccessAt: at(0.5) },
      healthy,
    );
    seeded.expiredHealth = seedLegacyHealth(vault, signInExpired);
    seeded.signedOutHealth = seedLegacyHealth(vault, cacheDeletedByAnAdministrator);
    // A mailbox taken out of RELAY_MAILBOXES since: nothing to copy, but its secret goes too.
    seeded.formerHealth = seedLegacyHealth(vault, { ...healthy, mailbox: 'former@contoso.com' });
    seeded.pendingA = seedLegacyPendingConsent(vault, 'newcomer@contoso.com');
    seeded.pendingB = seedLegacyPendingConsent(vault, 'expired@contoso.com');
    seeded.healthyCache = seedTokenCache(vault, 'shared@contoso.com');
    seeded.expiredCache = seedTokenCache(vault, 'expired@contoso.com');
    // Connected by the older relay, which wrote no health before its first timer run.
    seeded.newcomerCache = seedTokenCache(vault, 'newcomer@contoso.com');
    // The older docs said "to disconnect a mailbox, delete its secret": its cache is soft-deleted.
    seeded.signedOutCache = seedTokenCache(vault, 'signedout@contoso.com');
    await vaultStore.deleteSecret(seeded.signedOutCache);

    const config = loadConfig({
      RELAY_TENANT_ID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
      RELAY_CLIENT_ID: '11111111-2222-3333-4444-555555555555',
      RELAY_PUBLIC_BASE_URL: publicBaseUrl,
      RELAY_STATE_STORE: 'memory',
      RELAY_MAILBOXES: JSON.stringify([
        { address: 'shared@contoso.com', mode: 'delegated' },
        { address: 'expired@contoso.com', mode: 'delegated' },
        { address: 'newcomer@contoso.com', mode: 'delegated' },
        { address: 'signedout@contoso.com', mode: 'delegated' },
        { address: 'reports@contoso.com', mode: 'app' },
      ]),
    });
    secrets = createCachedSecretStore(vaultStore, { ttlSeconds: config.secrets.cacheSeconds });
    runtime = createRuntime(config, secrets);
    health = createMailboxHealthStore({ state: runtime.state, modeOf: runtime.mailboxes.listedModeOf });

    requestsBeforeMigration = vault.requests.length;
    report = await createKeyVaultMigration({
      state: runtime.state,
      secrets,
      directory: runtime.mailboxes,
    })();
    requestsAfterMigration = vault.requests.length;
  });

  afterAll(async () => {
    await runtime?.close();
    await vault?.close();
  });

  const migrationRequests = () => vault.requests.slice(requestsBeforeMigration, requestsAfterMigration);

  it("copies each configured mailbox's latest health into the state table", async () => {
    expect(report).toEqual({ healthRecordsCopied: 3, connectionsRecorded: 1, oldSecretsDeleted: 6 });
    expect(await health.read('shared@contoso.com')).toEqual(healthy);
    expect(await health.read('expired@contoso.com')).toEqual(signInExpired);
    expect((await runtime.state.read('mailbox', 'expired@contoso.com'))?.value).toEqual(signInExpired);
    expect(await runtime.state.read('mailbox', 'former@contoso.com')).toBeUndefined();
    expect(await health.read('reports@contoso.com')).toBeUndefined();
  });

  it('records a mailbox that has a token cache and no health as connected when its cache was written', async () => {
    const cache = vault.secretVersions(seeded.newcomerCache as string).at(-1);
    expect(await health.read('newcomer@contoso.com')).toEqual({
      mailbox: 'newcomer@contoso.com',
      connectedAt: asListed(cache?.updatedOn ?? new Date(0)),
      needsConsent: false,
    });
  });

  it('soft-deletes the old health and pending secrets and leaves token caches and the credential alone', () => {
    for (const name of [
      'healthyHealth',
      'expiredHealth',
      'signedOutHealth',
      'formerHealth',
      'pendingA',
      'pendingB',
    ])
      expect(softDeleted(vault, seeded[name] as string), name).toBe(true);
    for (const mailbox of ['shared@contoso.com', 'expired@contoso.com', 'newcomer@contoso.com']) {
      const versions = vault.secretVersions(tokenCacheSecretName(mailbox));
      expect(versions, mailbox).toHaveLength(1);
      expect(vault.secretValue(tokenCacheSecretName(mailbox)), mailbox).toContain(refreshTokenOf(mailbox));
    }
    expect(vault.secretValue('relay-client-secret')).toBe(appClientSecret);
    // One listing, one read per health secret, one delete per old secret: nothing written, no cache read.
    const operations = migrationRequests().filter((request) => request.authenticated);
    expect(operations.filter((request) => request.operation === 'list')).toHaveLength(1);
    expect(operations.filter((request) => request.operation === 'set')).toHaveLength(0);
    expect(operations.filter((request) => request.operation === 'delete')).toHaveLength(6);
    expect(
      operations.filter((request) => request.operation === 'get').map((request) => request.path),
    ).toEqual(expect.not.arrayContaining([expect.stringContaining('msal-cache')]));
  });

  it('shows the migrated health on /api/status without listing the vault again', async () => {
    const listsBefore = vault.countOperations('list');

    const status = await runtime.status();

    expect(vault.countOperations('list')).toBe(listsBefore);
    const byAddress = new Map(status.mailboxes.map((mailbox) => [mailbox.address, mailbox]));
    expect(byAddress.get('shared@contoso.com')).toMatchObject({
      health: 'healthy',
      connectedAt: healthy.connectedAt,
      lastRefreshAt: healthy.lastRefreshAt,
    });
    expect(byAddress.get('expired@contoso.com')).toMatchObject({
      health: 'needs_consent',
      lastError: { aadsts: 'AADSTS700082' },
      consentUrl: `${publicBaseUrl}/api/oauth/start?mailbox=expired%40contoso.com`,
    });
    expect(byAddress.get('newcomer@contoso.com')).toMatchObject({ health: 'healthy' });
    expect(byAddress.get('reports@contoso.com')).toMatchObject({ health: 'app-only' });
    const shown = JSON.stringify(status);
    for (const mailbox of ['shared@contoso.com', 'expired@contoso.com', 'newcomer@contoso.com'])
      expect(shown).not.toContain(refreshTokenOf(mailbox));
    expect(shown).not.toContain(appClientSecret);
    expect(shown).not.toContain('pkce-verifier-');
  });

  it('reports a mailbox whose token cache an administrator deleted as disconnected, with its connect link', async () => {
    // The older relay's /api/status said not_connected when the cache secret was gone (someone followed
    // "to disconnect a mailbox, delete its secret"); every send as it gets mailbox_not_connected.
    const status = await runtime.status();
    const signedOut = status.mailboxes.find((mailbox) => mailbox.address === 'signedout@contoso.com');
    expect(signedOut?.health).toBe('disconnected');
    expect(signedOut?.consentUrl).toBe(`${publicBaseUrl}/api/oauth/start?mailbox=signedout%40contoso.com`);
  });

  it('changes nothing and makes no vault request when it runs again in a new process', async () => {
    const rowsBefore = await runtime.state.list('mailbox');
    const requestsBefore = vault.requests.length;

    const again = await createKeyVaultMigration({
      state: runtime.state,
      secrets: createCachedSecretStore(await openVaultStore(vault), { ttlSeconds: 300 }),
      directory: runtime.mailboxes,
    })();

    expect(again).toBeUndefined();
    expect(vault.requests.length).toBe(requestsBefore);
    expect(await runtime.state.list('mailbox')).toEqual(rowsBefore);
  });
});

describe('a migration cut short by the vault', () => {
  let vault: KeyVaultPeer;
  let vaultStore: SecretStore;
  let state: StateTable;
  let directory: MailboxDirectory;
  const names: string[] = [];
  const legacy: MailboxHealthRecord[] = [
    {
      mailbox: 'shared@contoso.com',
      connectedAt: at(60),
      lastRefreshAt: at(0.25),
      lastSuccessAt: at(0.25),
      needsConsent: false,
    },
    {
      mailbox: 'billing@contoso.com',
      connectedAt: at(10),
      lastRefreshAt: at(0.25),
      lastSuccessAt: at(0.25),
      needsConsent: false,
    },
  ];

  beforeAll(async () => {
    vault = await startKeyVaultPeer();
    vaultStore = await openVaultStore(vault);
    for (const record of legacy) {
      names.push(seedLegacyHealth(vault, record));
      seedTokenCache(vault, record.mailbox);
    }
    names.push(seedLegacyPendingConsent(vault, 'shared@contoso.com'));
    names.push(seedLegacyPendingConsent(vault, 'billing@contoso.com'));
    state = createMemoryStateTable();
    directory = createMailboxDirectory(
      legacy.map((record) => ({ address: record.mailbox, mode: 'delegated' as const })),
      publicBaseUrl,
    );
  });

  afterAll(async () => {
    await vault?.close();
  });

  it('runs again to completion after the vault failed one of its deletes', async () => {
    // The vault answers 503 to every attempt at the second delete (the store makes three).
    let deletes = 0;
    const outageOnSecondDelete: SecretStore = {
      ...vaultStore,
      async deleteSecret(name) {
        deletes += 1;
        if (deletes === 2) vault.failNext({ status: 503, retryAfterSeconds: 0, times: 3 });
        await vaultStore.deleteSecret(name);
      },
    };
    const migrate = createKeyVaultMigration({ state, secrets: outageOnSecondDelete, directory });

    const failure = await migrate().catch((error: unknown) => error);

    expect(failure).toMatchObject({ code: 'secret_store_unavailable' });
    expect(String((failure as Error).message)).not.toContain('vault-access-token');
    expect(vault.requests.filter((request) => request.status === 503)).toHaveLength(3);
    expect(names.filter((name) => softDeleted(vault, name))).toHaveLength(1);
    // Every record was copied before anything was deleted: nothing is lost in between.
    const healthStore = createMailboxHealthStore({ state, modeOf: directory.listedModeOf });
    for (const record of legacy) expect(await healthStore.read(record.mailbox)).toEqual(record);

    // Meanwhile the timer refreshes a mailbox: the next run must not put the old record back.
    const refreshedAt = new Date();
    await healthStore.recordRefresh('shared@contoso.com', refreshedAt);
    const listsBefore = vault.countOperations('list');

    const completed = await migrate();

    expect(completed).toEqual({ healthRecordsCopied: 0, connectionsRecorded: 0, oldSecretsDeleted: 3 });
    expect(vault.countOperations('list')).toBe(listsBefore + 1);
    expect(names.every((name) => softDeleted(vault, name))).toBe(true);
    expect((await healthStore.read('shared@contoso.com'))?.lastRefreshAt).toBe(refreshedAt.toISOString());
    expect(await healthStore.read('billing@contoso.com')).toEqual(legacy[1]);
    for (const record of legacy)
      expect(vault.secretValue(tokenCacheSecretName(record.mailbox))).toContain(
        refreshTokenOf(record.mailbox),
      );

    const requestsBefore = vault.requests.length;
    expect(await createKeyVaultMigration({ state, secrets: vaultStore, directory })()).toBeUndefined();
    expect(vault.requests.length).toBe(requestsBefore);
  });
});
