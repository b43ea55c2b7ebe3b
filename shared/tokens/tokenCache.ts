import type { AccessToken, ReusableToken, TokenRequestOptions } from './accessToken.ts';

/**
 * Reuses each token until `margin` before it expires (Exchange's endpoint rejects tokens about to
 * expire), and lets concurrent callers that need a new one share a single request (single flight), the
 * way nodemailer's own XOAUTH2 renewal queue does.
 */
export interface TokenCache {
  get(
    key: string,
    fetch: (options: TokenRequestOptions) => Promise<AccessToken>,
    options?: TokenRequestOptions,
  ): Promise<ReusableToken>;
  invalidate(key: string): void;
}

export function createTokenCache(options: { marginSeconds: number; now?: () => number }): TokenCache {
  const now = options.now ?? Date.now;
  const marginMs = options.marginSeconds * 1000;
  const tokens = new Map<string, ReusableToken>();
  const inFlight = new Map<string, Promise<ReusableToken>>();

  return {
    get(key, fetch, requestOptions = { forceRefresh: false }) {
      const cached = tokens.get(key);
      if (!requestOptions.forceRefresh && cached !== undefined && cached.renewAfter.getTime() > now()) {
        return Promise.resolve(cached);
      }
      const pending = inFlight.get(key);
      if (pending !== undefined) return pending;
      const request = fetch(requestOptions)
        .then((token) => {
          // A token that lives shorter than the margin is not reused: the next send asks again.
          const renewAfter = new Date(Math.max(token.expiresOn.getTime() - marginMs, now()));
          const reusable: ReusableToken = { ...token, renewAfter };
          tokens.set(key, reusable);
          return reusable;
        })
        .finally(() => inFlight.delete(key));
      inFlight.set(key, request);
      return request;
    },
    invalidate(key) {
      tokens.delete(key);
    },
  };
}
