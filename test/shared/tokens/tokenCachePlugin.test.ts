import { randomUUID } from 'node:crypto';
import {
  type AccountInfo,
  ConfidentialClientApplication,
  CryptoProvider,
  TokenCacheContext,
} from '@azure/msal-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayError } from '../../../shared/errors.ts';
import {
  type CachedSecretStore,
  createCachedSecretStore,
} from '../../../shared/secrets/cachedSecretStore.ts';
import {
  createTokenCachePlugin,
  emptyTokenCache,
  tokenCacheSecretName,
} from '../../../shared/tokens/tokenCachePlugin.ts';
import { type IdentityPeer, startIdentityPeer, submitSignInForm } from '../../peers/identityPeer.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../../peers/keyVaultPeer.ts';
import { openKeyVaultStore } from '../../support/keyVaultStore.ts';

const clientId = 'relay-app';
const clientSecret = 'relay-app-secret-value';
const scope = 'https://outlook.office.com/SMTP.Send';
const redirectUri = 'https://relay.contoso.com/api/oauth/callback';
const keyVaultLimitBytes = 25_600;

let identity: IdentityPeer;
let vault: KeyVaultPeer;

/** Group ids for the ID token's `groups` claim: 700 make the ID token alone larger than Key Vault allows. */
const groupIds = (count: number) => Array.from({ length: count }, () => randomUUID());

interface StoredCache {
  Account?: Record<string, { home_account_id: string; username: string }>;
  IdToken?: Record<string, { home_account_id: string }>;
  AccessToken?: Record<string, unknown>;
  RefreshToken?: Record<string, { home_account_id: string; secret: string }>;
}

beforeAll(async () => {
  identity = await startIdentityPeer();
  identity.registerClient({ clientId, clientSecret });
  vault = await startKeyVaultPeer({ authority: identity.authority });
});

afterAll(async () => {
  await vault?.close();
  await identity?.close();
});

/** A relay instance's secret store: its own memory and Key Vault client over the one vault. */
async function openSecrets(): Promise<CachedSecretStore> {
  return createCachedSecretStore(await openKeyVaultStore(vault, { recoveryPollIntervalMs: 1 }), {
    ttlSeconds: 300,
  });
}

/** The real MSAL client the relay builds for a mailbox, with the plugin over the given store. */
function mailboxClient(secrets: CachedSecretStore, mailbox: string): ConfidentialClientApplication {
  return new ConfidentialClientApplication({
    auth: { clientId, clientSecret, authority: identity.authority, knownAuthorities: [identity.host] },
    cache: { cachePlugin: createTokenCachePlugin({ secrets, mailbox, scope }) },
  });
}

/** The consent flow as the relay runs it: authorize URL, sign-in on the identity peer's page, code exchange. */
async function signIn(client: ConfidentialClientApplication, username: string): Promise<void> {
  const pkce = await new CryptoProvider().generatePkceCodes();
  const authorizeUrl = await client.getAuthCodeUrl({
    scopes: [scope],
    redirectUri,
    codeChallenge: pkce.challenge,
    codeChallengeMethod: 'S256',
  });
  const callback = await submitSignInForm(authorizeUrl, { username });
  await client.acquireTokenByCode({
    code: callback.searchParams.get('code') ?? '',
    scopes: [scope],
    redirectUri,
    codeVerifier: pkce.verifier,
  });
}

function storedCache(mailbox: string): { cache: StoredCache; bytes: number } {
  const value = vault.secretValue(tokenCacheSecretName(mailbox)) ?? '{}';
  return { cache: JSON.parse(value) as StoredCache, bytes: Buffer.byteLength(value) };
}

async function mailboxAccount(client: ConfidentialClientApplication, mailbox: string): Promise<AccountInfo> {
  const accounts = await client.getTokenCache().getAllAccounts();
  const account = accounts.find((candidate) => candidate.username.toLowerCase() === mailbox);
  if (account === undefined) throw new Error(`MSAL finds no account for ${mailbox}`);
  return account;
}

/** What a restarted relay does on the send path: a new client over the stored cache, a silent token. */
async function tokenAfterRestart(mailbox: string): Promise<string> {
  const client = mailboxClient(await openSecrets(), mailbox);
  const account = await mailboxAccount(client, mailbox);
  const result = await client.acquireTokenSilent({ account, scopes: [scope] });
  return result.accessToken;
}

const refreshGrants = () =>
  identity.tokenRequests.filter((request) => request.grantType === 'refresh_token' && request.status === 200)
    .length;

describe('token cache plugin', () => {
  it('stores a sign-in whose ID token alone outgrows Key Vault, and a restarted relay refreshes from it', async () => {
    const mailbox = 'many-groups@contoso.com';
    identity.registerUser({ username: mailbox, groups: groupIds(700) });

    await signIn(mailboxClient(await openSecrets(), mailbox), mailbox);

    const { cache, bytes } = storedCache(mailbox);
    expect(bytes).toBeLessThanOrEqual(keyVaultLimitBytes);
    expect(Object.keys(cache.RefreshToken ?? {})).toHaveLength(1);
    expect(cache.IdToken).toEqual({});
    const refreshesBefore = refreshGrants();
    const accessToken = await tokenAfterRestart(mailbox);
    expect(identity.isValidAccessToken(accessToken, { scope, username: mailbox })).toBe(true);
    expect(refreshGrants()).toBe(refreshesBefore + 1);
  });

  it('keeps only the current account of a re-created user, with its ID token, when both no longer fit', async () => {
    const mailbox = 'recreated@contoso.com';
    const groups = groupIds(300);
    identity.registerUser({ username: mailbox, groups });
    const secrets = await openSecrets();
    await signIn(mailboxClient(secrets, mailbox), mailbox);
    expect(Object.keys(storedCache(mailbox).cache.Account ?? {})).toHaveLength(1);

    // The user was deleted and created again under the same address: a new object id, a new account.
    const recreated = identity.registerUser({ username: mailbox, groups });
    await signIn(mailboxClient(secrets, mailbox), mailbox);

    const { cache, bytes } = storedCache(mailbox);
    expect(bytes).toBeLessThanOrEqual(keyVaultLimitBytes);
    const accounts = Object.values(cache.Account ?? {});
    expect(accounts).toHaveLength(1);
    expect(accounts[0]?.home_account_id).toContain(recreated.oid);
    expect(Object.values(cache.RefreshToken ?? {}).map((token) => token.home_account_id)).toEqual([
      accounts[0]?.home_account_id,
    ]);
    expect(Object.values(cache.IdToken ?? {}).map((token) => token.home_account_id)).toEqual([
      accounts[0]?.home_account_id,
    ]);
    const accessToken = await tokenAfterRestart(mailbox);
    expect(identity.isValidAccessToken(accessToken, { scope, username: mailbox })).toBe(true);
  });

  it('connects again at once after someone deleted the token-cache secret, as the old docs said to', async () => {
    const mailbox = 'deleted-cache@contoso.com';
    identity.registerUser({ username: mailbox });
    const secrets = await openSecrets();
    await signIn(mailboxClient(secrets, mailbox), mailbox);
    const firstRefreshToken = Object.values(storedCache(mailbox).cache.RefreshToken ?? {})[0]?.secret;
    await secrets.deleteSecret(tokenCacheSecretName(mailbox));

    await signIn(mailboxClient(await openSecrets(), mailbox), mailbox);

    const refreshTokens = Object.values(storedCache(mailbox).cache.RefreshToken ?? {});
    expect(refreshTokens).toHaveLength(1);
    expect(refreshTokens[0]?.secret).not.toBe(firstRefreshToken);
    const accessToken = await tokenAfterRestart(mailbox);
    expect(identity.isValidAccessToken(accessToken, { scope, username: mailbox })).toBe(true);
  });

  it('forgets the account, also in a running client, once the empty cache is written; a new sign-in works', async () => {
    const mailbox = 'disconnected@contoso.com';
    identity.registerUser({ username: mailbox });
    const secrets = await openSecrets();
    const running = mailboxClient(secrets, mailbox);
    await signIn(running, mailbox);
    expect(await running.getTokenCache().getAllAccounts()).toHaveLength(1);

    await secrets.setSecret(tokenCacheSecretName(mailbox), emptyTokenCache);
    const writesAfterDisconnect = vault.countOperations('set');

    expect(await running.getTokenCache().getAllAccounts()).toEqual([]);
    expect(
      await mailboxClient(await openSecrets(), mailbox)
        .getTokenCache()
        .getAllAccounts(),
    ).toEqual([]);
    expect(vault.countOperations('set')).toBe(writesAfterDisconnect);
    expect(vault.secretValue(tokenCacheSecretName(mailbox))).toBe(emptyTokenCache);
    await signIn(mailboxClient(secrets, mailbox), mailbox);
    const accessToken = await tokenAfterRestart(mailbox);
    expect(identity.isValidAccessToken(accessToken, { scope, username: mailbox })).toBe(true);
  });

  it('takes up the sign-in another instance refreshed, without writing it back', async () => {
    const mailbox = 'two-instances@contoso.com';
    identity.registerUser({ username: mailbox });
    const firstSecrets = await openSecrets();
    const first = mailboxClient(firstSecrets, mailbox);
    await signIn(first, mailbox);
    const second = mailboxClient(await openSecrets(), mailbox);
    await second.acquireTokenSilent({
      account: await mailboxAccount(second, mailbox),
      scopes: [scope],
      forceRefresh: true,
    });
    const refreshedBySecond = Object.values(storedCache(mailbox).cache.RefreshToken ?? {})[0]?.secret;
    const writesBefore = vault.countOperations('set');

    // The first instance's cached copy expires; its client then reads the second one's sign-in.
    firstSecrets.invalidate(tokenCacheSecretName(mailbox));
    await first.getTokenCache().getAllAccounts();
    const held = JSON.parse(first.getTokenCache().serialize()) as StoredCache;

    expect(Object.values(held.RefreshToken ?? {}).map((token) => token.secret)).toEqual([refreshedBySecond]);
    expect(vault.countOperations('set')).toBe(writesBefore);
  });

  it('stores nothing and says the mailbox must be connected again when even its refresh token does not fit', async () => {
    const mailbox = 'oversized@contoso.com';
    identity.registerUser({ username: mailbox });
    const secrets = await openSecrets();
    const client = mailboxClient(secrets, mailbox);
    await signIn(client, mailbox);
    const stored = vault.secretValue(tokenCacheSecretName(mailbox));
    // A refresh token of 30 KB: the relay cannot keep it in Key Vault whatever else it drops.
    const oversized = JSON.parse(client.getTokenCache().serialize()) as StoredCache;
    for (const token of Object.values(oversized.RefreshToken ?? {})) token.secret = 'r'.repeat(30_000);
    const tokenCache = client.getTokenCache();
    tokenCache.deserialize(JSON.stringify(oversized));
    const plugin = createTokenCachePlugin({ secrets, mailbox, scope });

    const failure = await plugin
      .afterCacheAccess(new TokenCacheContext(tokenCache, true))
      .catch((error: unknown) => error);

    expect(failure).toMatchObject({
      code: 'token_cache_too_large',
      message: expect.stringContaining('must be connected again'),
    });
    const { message, remedy } = failure as RelayError;
    expect(`${message} ${remedy}`).not.toMatch(/delete/i);
    expect(`${message} ${remedy}`).not.toContain('rrrr');
    expect(vault.secretValue(tokenCacheSecretName(mailbox))).toBe(stored);
  });
});
