import { AsyncLocalStorage } from 'node:async_hooks';
import type { AccountInfo, ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import { RelayError } from '../errors.ts';
import { mailboxSecretName, mailboxTag } from '../secrets/secretNames.ts';
import type { SecretStore } from '../secrets/secretStore.ts';

/**
 * Persists MSAL's token cache for one delegated mailbox in the secret store (MSAL never hands out refresh
 * tokens, so its serialized cache is what must survive restarts). One secret per mailbox, tagged with the
 * address. Written back only when MSAL says the cache changed, and only when what would be written is
 * safe to keep:
 * - every account in it is the mailbox itself (a different account that signed in is never stored);
 * - with a tenant id configured, every ID token in it is of that tenant (a sign-in elsewhere is never stored);
 * - it still holds a refresh token whenever the stored one did (a good sign-in is never replaced by less);
 * - expired access tokens and tokens for other scopes are dropped.
 * Key Vault keeps every version and the file store renames a complete file over the old one, so the last
 * good value exists until the new one is written. What is read replaces what the client holds: a mailbox
 * disconnected elsewhere (its cache overwritten with emptyTokenCache) is forgotten by every client reading it.
 *
 * A cache over Key Vault's 25 KB (typically an ID token carrying hundreds of group ids) is reduced by the
 * relay itself, never by someone deleting the secret (soft delete would keep its name taken): first to what
 * a refresh needs (the account, its newest refresh token, its ID token, app metadata), then without the ID
 * token, which MSAL does not need to find the account or to refresh (checked against the real MSAL in
 * test/shared/tokens/tokenCachePlugin.test.ts). The next refresh brings a new ID token.
 */
export const tokenCachePurpose = 'msal-cache';
// Key Vault's limit is 25 KB per value; keep some room for the service's own accounting.
const maxCacheBytes = 24 * 1024;

/**
 * What disconnecting a mailbox writes as the secret's new version (never a delete, which would keep the name
 * taken): MSAL's serialized shape with nothing in it, so a client that reads it forgets the account.
 */
export const emptyTokenCache = JSON.stringify({
  Account: {},
  IdToken: {},
  AccessToken: {},
  RefreshToken: {},
  AppMetadata: {},
});

export function tokenCacheSecretName(mailbox: string): string {
  return mailboxSecretName(tokenCachePurpose, mailbox);
}

/** The fields of MSAL's serialized cache entities (msal-node's Serializer) that the pruning reads. */
interface SerializedEntity {
  home_account_id?: string;
  /** For an ID token, its `tid`. */
  realm?: string;
  username?: string;
  secret?: string;
  target?: string;
  expires_on?: string;
}

type SerializedCache = Record<string, Record<string, SerializedEntity> | undefined>;

export interface TokenCachePluginOptions {
  secrets: SecretStore;
  mailbox: string;
  /** The delegated SMTP scope; access tokens for anything else are not worth persisting. */
  scope: string;
  /** RELAY_TENANT_ID when it is a tenant id (a GUID): ID tokens of any other tenant are not stored. */
  tenantId?: string;
  now?: () => number;
}

export function createTokenCachePlugin(options: TokenCachePluginOptions): ICachePlugin {
  const mailbox = options.mailbox.trim().toLowerCase();
  const secretName = tokenCacheSecretName(mailbox);
  const now = options.now ?? Date.now;
  // The value last read from or written to the store: MSAL's in-memory cache already matches it.
  let knownValue: string | undefined;

  return {
    async beforeCacheAccess(context: TokenCacheContext): Promise<void> {
      if (replacingMemory.getStore() === true) return;
      const stored = await options.secrets.getSecret(secretName);
      // A secret deleted after this client read it is a sign-in that no longer exists, like an empty cache.
      const value = stored?.value ?? (knownValue === undefined ? undefined : emptyTokenCache);
      if (value === undefined || value === knownValue) return;
      if (knownValue !== undefined) await forgetAccounts(context.tokenCache);
      context.tokenCache.deserialize(value);
      knownValue = value;
    },
    async afterCacheAccess(context: TokenCacheContext): Promise<void> {
      if (!context.cacheHasChanged || replacingMemory.getStore() === true) return;
      const cache = JSON.parse(context.tokenCache.serialize()) as SerializedCache;
      if (!onlyAccountsOf(cache, mailbox) || !onlyTenant(cache, options.tenantId)) return;
      const previous = knownValue === undefined ? {} : parse(knownValue);
      if (!hasRefreshToken(cache) && hasRefreshToken(previous)) return;
      const value = fitForStore(pruneAccessTokens(cache, options.scope, now()), previous, mailbox);
      if (value === knownValue) return;
      await options.secrets.setSecret(secretName, value, {
        tags: { [mailboxTag]: mailbox, purpose: tokenCachePurpose },
        contentType: 'application/json',
      });
      knownValue = value;
    },
  };
}

/**
 * MSAL's deserialize merges what it reads into what the client holds and never removes anything, so an
 * account the store no longer has would live on in a long-lived client and be written back by its next
 * refresh. The client's own TokenCache methods remove it; they call back into the plugin, and those nested
 * calls must neither read nor write the store.
 */
const replacingMemory = new AsyncLocalStorage<boolean>();

type SerializableCache = TokenCacheContext['tokenCache'];

interface AccountRemovingCache {
  getAllAccounts(): Promise<AccountInfo[]>;
  removeAccount(account: AccountInfo): Promise<void>;
}

/** msal-node hands the plugin its TokenCache, typed only as serializable. */
function removesAccounts(cache: SerializableCache): cache is SerializableCache & AccountRemovingCache {
  const candidate = cache as Partial<AccountRemovingCache>;
  return typeof candidate.getAllAccounts === 'function' && typeof candidate.removeAccount === 'function';
}

async function forgetAccounts(tokenCache: SerializableCache): Promise<void> {
  if (!removesAccounts(tokenCache)) return;
  await replacingMemory.run(true, async () => {
    for (const account of await tokenCache.getAllAccounts()) await tokenCache.removeAccount(account);
  });
}

function parse(value: string): SerializedCache {
  try {
    return JSON.parse(value) as SerializedCache;
  } catch {
    return {};
  }
}

function entries(cache: SerializedCache, kind: string): [string, SerializedEntity][] {
  return Object.entries(cache[kind] ?? {});
}

function onlyAccountsOf(cache: SerializedCache, mailbox: string): boolean {
  const accounts = entries(cache, 'Account');
  return accounts.length > 0 && accounts.every(([, account]) => account.username?.toLowerCase() === mailbox);
}

function onlyTenant(cache: SerializedCache, tenantId: string | undefined): boolean {
  if (tenantId === undefined) return true;
  const wanted = tenantId.toLowerCase();
  return entries(cache, 'IdToken').every(([, idToken]) => idToken.realm?.toLowerCase() === wanted);
}

function hasRefreshToken(cache: SerializedCache): boolean {
  return entries(cache, 'RefreshToken').length > 0;
}

function pruneAccessTokens(cache: SerializedCache, scope: string, nowMs: number): SerializedCache {
  const wanted = scope.toLowerCase();
  const kept = entries(cache, 'AccessToken').filter(
    ([, token]) =>
      Number(token.expires_on ?? 0) * 1000 > nowMs &&
      (token.target ?? '').toLowerCase().split(' ').includes(wanted),
  );
  return { ...cache, AccessToken: Object.fromEntries(kept) };
}

/**
 * The refresh token to keep when there are several: one the identity provider just issued (not in the
 * stored value) wins, as a rotated token supersedes the old one; otherwise MSAL's most recently written.
 */
function newestRefreshToken(
  cache: SerializedCache,
  previous: SerializedCache,
): [string, SerializedEntity] | undefined {
  const storedSecrets = new Set(entries(previous, 'RefreshToken').map(([, token]) => token.secret));
  const refreshTokens = entries(cache, 'RefreshToken');
  return refreshTokens.findLast(([, token]) => !storedSecrets.has(token.secret)) ?? refreshTokens.at(-1);
}

/** Only what refreshing the mailbox's sign-in needs: its account, one refresh token, ID and access tokens. */
function refreshEssentials(cache: SerializedCache, previous: SerializedCache): SerializedCache {
  const refreshToken = newestRefreshToken(cache, previous);
  if (refreshToken === undefined) return cache;
  const homeAccountId = refreshToken[1].home_account_id;
  const ofAccount = (kind: string) =>
    Object.fromEntries(entries(cache, kind).filter(([, entity]) => entity.home_account_id === homeAccountId));
  const account = ofAccount('Account');
  // A refresh token without its account would leave MSAL nothing to find: keep everything rather than that.
  if (Object.keys(account).length === 0) return cache;
  return {
    Account: account,
    IdToken: ofAccount('IdToken'),
    AccessToken: ofAccount('AccessToken'),
    RefreshToken: Object.fromEntries([refreshToken]),
    AppMetadata: cache.AppMetadata ?? {},
  };
}

/** Each a smaller cache than the one before; the first that fits Key Vault is stored. */
const reductions: ((cache: SerializedCache, previous: SerializedCache) => SerializedCache)[] = [
  (cache) => cache,
  refreshEssentials,
  // The access token is only a shortcut for the next send; the refresh token is what must survive.
  (cache, previous) => ({ ...refreshEssentials(cache, previous), AccessToken: {} }),
  (cache, previous) => ({ ...refreshEssentials(cache, previous), AccessToken: {}, IdToken: {} }),
];

function fitForStore(cache: SerializedCache, previous: SerializedCache, mailbox: string): string {
  for (const reduce of reductions) {
    const value = JSON.stringify(reduce(cache, previous));
    if (Buffer.byteLength(value) <= maxCacheBytes) return value;
  }
  throw new RelayError('token_cache_too_large', {
    message: `The sign-in of ${mailbox} does not fit in Key Vault's 25 KB secret limit even reduced to its refresh token, so it was not stored: the mailbox must be connected again.`,
    remedy: `Connect ${mailbox} again: open the relay's connect link for it and sign in as ${mailbox}.`,
    details: { mailbox },
  });
}
