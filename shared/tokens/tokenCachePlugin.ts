import type { ICachePlugin, TokenCacheContext } from '@azure/msal-node';
import { RelayError } from '../errors.ts';
import { mailboxSecretName, mailboxTag } from '../secrets/secretNames.ts';
import type { SecretStore } from '../secrets/secretStore.ts';

/**
 * Persists MSAL's token cache for one delegated mailbox in the secret store (MSAL never hands out refresh
 * tokens, so its serialized cache is what must survive restarts). One secret per mailbox, tagged with the
 * address. Written back only when MSAL says the cache changed, and only when what would be written is
 * safe to keep:
 * - every account in it is the mailbox itself (a different account that signed in is never stored);
 * - it still holds a refresh token whenever the stored one did (a good sign-in is never replaced by less);
 * - expired access tokens and tokens for other scopes are dropped, so it stays under Key Vault's 25 KB.
 * Key Vault keeps every version and the file store renames a complete file over the old one, so the last
 * good value exists until the new one is written.
 */
export const tokenCachePurpose = 'msal-cache';
// Key Vault's limit is 25 KB per value; keep some room for the service's own accounting.
const maxCacheBytes = 24 * 1024;

export function tokenCacheSecretName(mailbox: string): string {
  return mailboxSecretName(tokenCachePurpose, mailbox);
}

interface SerializedEntity {
  username?: string;
  target?: string;
  expires_on?: string;
}

type SerializedCache = Record<string, Record<string, SerializedEntity> | undefined>;

export interface TokenCachePluginOptions {
  secrets: SecretStore;
  mailbox: string;
  /** The delegated SMTP scope; access tokens for anything else are not worth persisting. */
  scope: string;
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
      const stored = await options.secrets.getSecret(secretName);
      if (stored === undefined || stored.value === knownValue) return;
      context.tokenCache.deserialize(stored.value);
      knownValue = stored.value;
    },
    async afterCacheAccess(context: TokenCacheContext): Promise<void> {
      if (!context.cacheHasChanged) return;
      const cache = JSON.parse(context.tokenCache.serialize()) as SerializedCache;
      if (!onlyAccountsOf(cache, mailbox)) return;
      if (!hasRefreshToken(cache) && knownValue !== undefined && hasRefreshToken(parse(knownValue))) return;
      const value = fitForStore(pruneAccessTokens(cache, options.scope, now()), mailbox);
      if (value === knownValue) return;
      await options.secrets.setSecret(secretName, value, {
        tags: { [mailboxTag]: mailbox, purpose: tokenCachePurpose },
        contentType: 'application/json',
      });
      knownValue = value;
    },
  };
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

function fitForStore(cache: SerializedCache, mailbox: string): string {
  const value = JSON.stringify(cache);
  if (Buffer.byteLength(value) <= maxCacheBytes) return value;
  // The access token is only a shortcut for the next send; the refresh token is what must survive.
  const withoutAccessTokens = JSON.stringify({ ...cache, AccessToken: {} });
  if (Buffer.byteLength(withoutAccessTokens) <= maxCacheBytes) return withoutAccessTokens;
  throw new RelayError('token_cache_too_large', {
    message: `The token cache of ${mailbox} is larger than Key Vault's 25 KB limit even without access tokens.`,
    remedy: `Delete the secret ${tokenCacheSecretName(mailbox)} and connect the mailbox again.`,
  });
}
