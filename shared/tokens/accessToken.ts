/** An OAuth2 access token for SMTP AUTH XOAUTH2, as a token source returns it. */
export interface AccessToken {
  accessToken: string;
  expiresOn: Date;
}

/** A token as the cache hands it out: `renewAfter` is when it stops being reused. */
export interface ReusableToken extends AccessToken {
  renewAfter: Date;
}

export interface TokenRequestOptions {
  /** Skip every cache: used once after Exchange answered 535 5.7.3 to a token. */
  forceRefresh: boolean;
}

/** Gets a token for one sender mailbox. App-only and delegated sending are two such sources. */
export type TokenSource = (mailbox: string, options: TokenRequestOptions) => Promise<AccessToken>;

/**
 * What the transports and the token maintenance ask: a token for a sender mailbox, from the source its mode
 * names, reused from the shared cache until `renewAfter` (mailboxTokens.ts builds it).
 */
export type MailboxTokenProvider = (mailbox: string, options: TokenRequestOptions) => Promise<ReusableToken>;
