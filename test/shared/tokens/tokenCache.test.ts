import { describe, expect, it } from 'vitest';
import { createTokenCache } from '../../../shared/tokens/tokenCache.ts';

describe('token cache', () => {
  it('reuses a token until the margin before expiry, then fetches a new one', async () => {
    let clock = 1_000_000;
    let fetched = 0;
    const cache = createTokenCache({ marginSeconds: 300, now: () => clock });
    const fetch = async () => {
      fetched += 1;
      return { accessToken: `token-${fetched}`, expiresOn: new Date(clock + 3600_000) };
    };
    expect((await cache.get('app', fetch)).accessToken).toBe('token-1');
    clock += 3600_000 - 301_000;
    expect((await cache.get('app', fetch)).accessToken).toBe('token-1');
    clock += 2_000;
    expect((await cache.get('app', fetch)).accessToken).toBe('token-2');
  });

  it('lets concurrent callers share one request, and a forced refresh skip the cache', async () => {
    let fetched = 0;
    const cache = createTokenCache({ marginSeconds: 300 });
    const fetch = async () => {
      fetched += 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return { accessToken: `token-${fetched}`, expiresOn: new Date(Date.now() + 3600_000) };
    };
    const tokens = await Promise.all(Array.from({ length: 50 }, () => cache.get('app', fetch)));
    expect(new Set(tokens.map((token) => token.accessToken))).toEqual(new Set(['token-1']));
    expect((await cache.get('app', fetch, { forceRefresh: true })).accessToken).toBe('token-2');
  });

  it('does not remember a failed request', async () => {
    const cache = createTokenCache({ marginSeconds: 300 });
    await expect(cache.get('app', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    const token = await cache.get('app', async () => ({
      accessToken: 'ok',
      expiresOn: new Date(Date.now() + 3600_000),
    }));
    expect(token.accessToken).toBe('ok');
  });
});
