import type { MailboxMode } from '../config.ts';
import type { MailboxTokenProvider, TokenSource } from './accessToken.ts';
import type { TokenCache } from './tokenCache.ts';

/**
 * Chooses the token source for a sender mailbox and puts the shared cache in front of it. App-only tokens
 * are one token for the whole app (cache key `app`); delegated tokens are per mailbox.
 */
export type { MailboxMode };

export interface MailboxTokenSources {
  app: TokenSource;
  delegated?: TokenSource;
}

export function createMailboxTokens(
  cache: TokenCache,
  sources: MailboxTokenSources,
  modeOf: (mailbox: string) => MailboxMode,
  /**
   * Runs before a delegated token is handed out, even a cached one: throws when the mailbox was
   * disconnected (on any instance), so a token this process still holds is not used for it.
   */
  checkDelegated: (mailbox: string) => Promise<void> = async () => undefined,
): MailboxTokenProvider {
  return async (mailbox, options) => {
    const mode = modeOf(mailbox);
    const source = mode === 'delegated' ? sources.delegated : sources.app;
    if (source === undefined) throw new Error(`No token source for ${mode} mailboxes`);
    if (mode === 'delegated') await checkDelegated(mailbox);
    const key = mailboxTokenKey(mode, mailbox);
    return cache.get(key, (requestOptions) => source(mailbox, requestOptions), options);
  };
}

/** The token cache key: one app-only token for all mailboxes, one delegated token per mailbox. */
export function mailboxTokenKey(mode: MailboxMode, mailbox: string): string {
  return mode === 'app' ? 'app' : `delegated:${mailbox.toLowerCase()}`;
}
