import type { MailboxTokenProvider } from '../smtp/mailboxTransports.ts';
import type { TokenSource } from './accessToken.ts';
import type { TokenCache } from './tokenCache.ts';

/**
 * Chooses the token source for a sender mailbox and puts the shared cache in front of it. App-only tokens
 * are one token for the whole app (cache key `app`); delegated tokens are per mailbox.
 */
export type MailboxMode = 'app' | 'delegated';

export interface MailboxTokenSources {
  app: TokenSource;
  delegated?: TokenSource;
}

export function createMailboxTokens(
  cache: TokenCache,
  sources: MailboxTokenSources,
  modeOf: (mailbox: string) => MailboxMode,
): MailboxTokenProvider {
  return (mailbox, options) => {
    const mode = modeOf(mailbox);
    const source = mode === 'delegated' ? sources.delegated : sources.app;
    if (source === undefined) throw new Error(`No token source for ${mode} mailboxes`);
    const key = mode === 'app' ? 'app' : `delegated:${mailbox.toLowerCase()}`;
    return cache.get(key, (requestOptions) => source(mailbox, requestOptions), options);
  };
}
