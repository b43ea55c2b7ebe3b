import { randomBytes } from 'node:crypto';
import { isTenantGuid } from '../config.ts';
import { invalidRequest, RelayError } from '../errors.ts';
import { isMailboxAddress } from '../mailAddress.ts';
import { consentCallbackUrl, type MailboxDirectory } from '../mailboxes.ts';
import { sha256 } from '../sha256.ts';
import type { DelegatedClients } from '../tokens/delegatedTokenSource.ts';
import { aadstsCodeOf } from '../tokens/identityErrors.ts';
import { type PendingConsents, pendingConsentLifetimeSeconds } from './pendingConsents.ts';

/**
 * Connecting a delegated mailbox: the authorization code flow with PKCE, as a confidential client.
 * start() remembers the attempt (pendingConsents.ts) and returns Microsoft's authorize URL plus a cookie
 * that binds the attempt to the browser that started it (RFC 6749 10.12). complete() checks the state's
 * shape and the cookie before reading anything, then the stored attempt (MSAL would parse the state as its
 * own format), redeems the code with MSAL, and keeps the sign-in only
 * when the account that signed in is the mailbox being connected: the token cache plugin refuses to store
 * any other account, and the outcome names who signed in.
 *
 * The sign-in must also be of the relay's tenant. With RELAY_TENANT_ID a tenant id, the ID token's `tid`
 * must be that id: otherwise nothing is kept (the token cache plugin stores no ID token of another tenant)
 * and the outcome names both tenants. With a domain there is no id to compare with: Entra resolves a
 * verified domain to the one tenant that owns it and issues that tenant's tokens, so `tid` could only be
 * compared with Entra's own answer; the GUID is what gives the check (docs say so).
 */
export const consentScopes = ['offline_access', 'openid', 'profile'];

export interface ConsentCookie {
  name: string;
  value: string;
  maxAgeSeconds: number;
  /** Only the callback needs it back. */
  path: string;
  secure: boolean;
}

export interface ConsentStart {
  mailbox: string;
  authorizeUrl: string;
  cookie: ConsentCookie;
}

export type StateProblem = 'missing' | 'unknown' | 'expired' | 'other_browser';

export type ConsentOutcome =
  | { kind: 'connected'; mailbox: string; connectedAt: Date }
  | { kind: 'wrong_account'; mailbox: string; signedInAs: string }
  | { kind: 'wrong_tenant'; mailbox: string; signedInTenant: string; configuredTenant: string }
  | { kind: 'state_rejected'; problem: StateProblem }
  | { kind: 'identity_error'; mailbox: string; error: string; description: string; aadsts?: number }
  | { kind: 'exchange_failed'; mailbox: string; failure: RelayError };

export interface ConsentFlow {
  start(mailbox: string | null): Promise<ConsentStart>;
  complete(query: URLSearchParams, cookies: ReadonlyMap<string, string>): Promise<ConsentOutcome>;
  /** The cookie that start() set for this state, for the callback to read and then clear. */
  cookieName(state: string): string;
}

export interface ConsentFlowOptions {
  directory: MailboxDirectory;
  clients: DelegatedClients;
  pending: PendingConsents;
  scope: string;
  publicBaseUrl: string;
  /** Called once a mailbox is connected: record health, drop tokens cached for the old sign-in. */
  onConnected(mailbox: string, at: Date): Promise<void>;
  now?: () => number;
}

function randomUrlSafe(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

// The state and the browser binding are 32 random bytes, base64url: 43 characters. A callback whose state or
// cookie has any other shape was not issued by this relay and is refused before any store is read.
const issuedTokenPattern = /^[A-Za-z0-9_-]{43}$/;
const randomTokenBytes = 32;

/**
 * The PKCE verifier (RFC 7636: 43 to 128 unreserved characters) is derived from the cookie only the starting
 * browser holds and the state, so the stored consent holds nothing that could redeem an intercepted code.
 */
function pkceVerifier(browserBinding: string, state: string): string {
  return sha256(`pkce\n${browserBinding}\n${state}`, 'base64url');
}

export function createConsentFlow(options: ConsentFlowOptions): ConsentFlow {
  const { directory, clients, pending, scope } = options;
  const now = options.now ?? Date.now;
  const redirectUri = consentCallbackUrl(options.publicBaseUrl);
  const secureCookie = options.publicBaseUrl.startsWith('https:');
  const cookieName = (state: string) => `relay-consent-${sha256(state).slice(0, 16)}`;

  function validMailbox(value: string | null): string {
    const mailbox = value?.trim().toLowerCase() ?? '';
    if (mailbox === '' || mailbox.length > 254 || !isMailboxAddress(mailbox)) {
      throw invalidRequest([
        {
          field: 'mailbox',
          message: mailbox === '' ? 'is required (?mailbox=<address>)' : 'must be a mailbox address',
        },
      ]);
    }
    if (directory.modeOf(mailbox) !== 'delegated') {
      throw new RelayError('mailbox_not_delegated', {
        message: `${mailbox} is not a delegated mailbox, so a sign-in for it would never be used or kept fresh.`,
        remedy: `Add {"address":"${mailbox}","mode":"delegated"} to RELAY_MAILBOXES, restart, then open this URL again.`,
      });
    }
    return mailbox;
  }

  return {
    cookieName,
    async start(requestedMailbox) {
      const mailbox = validMailbox(requestedMailbox);
      const state = randomUrlSafe(randomTokenBytes);
      const nonce = randomUrlSafe(16);
      const browserBinding = randomUrlSafe(randomTokenBytes);
      const codeVerifier = pkceVerifier(browserBinding, state);
      await pending.save(state, {
        mailbox,
        nonce,
        browserBindingSha256: sha256(browserBinding),
        expiresAt: now() + pendingConsentLifetimeSeconds * 1000,
      });
      const client = await clients.clientFor(mailbox);
      const authorizeUrl = await client
        .getAuthCodeUrl({
          scopes: [scope, ...consentScopes],
          redirectUri,
          responseMode: 'query',
          codeChallenge: sha256(codeVerifier, 'base64url'),
          codeChallengeMethod: 'S256',
          state,
          nonce,
          loginHint: mailbox,
          prompt: 'select_account',
        })
        .catch((error: unknown) => {
          throw clients.mapError(error);
        });
      // MSAL leaves login_hint out when prompt is select_account; Entra honours both together (the picker
      // opens with the mailbox pre-selected), and the mailbox is what must sign in.
      const authorizeWithHint = new URL(authorizeUrl);
      authorizeWithHint.searchParams.set('login_hint', mailbox);
      return {
        mailbox,
        authorizeUrl: authorizeWithHint.toString(),
        cookie: {
          name: cookieName(state),
          value: browserBinding,
          maxAgeSeconds: pendingConsentLifetimeSeconds,
          path: new URL(redirectUri).pathname,
          secure: secureCookie,
        },
      };
    },

    async complete(query, cookies) {
      const state = query.get('state');
      if (state === null || state === '') return { kind: 'state_rejected', problem: 'missing' };
      // The anonymous callback costs nothing to abuse: no store is read for a state this relay cannot have
      // issued, or without the cookie the starting browser got.
      if (!issuedTokenPattern.test(state)) return { kind: 'state_rejected', problem: 'unknown' };
      const browserBinding = cookies.get(cookieName(state));
      if (browserBinding === undefined || !issuedTokenPattern.test(browserBinding))
        return { kind: 'state_rejected', problem: 'other_browser' };
      const taken = await pending.take(state, browserBinding);
      if (taken.status !== 'accepted') return { kind: 'state_rejected', problem: taken.status };
      const { mailbox, nonce } = taken.pending;
      const codeVerifier = pkceVerifier(browserBinding, state);

      const error = query.get('error');
      const code = query.get('code');
      if (error !== null || code === null || code === '') {
        const description = query.get('error_description') ?? 'The sign-in returned no authorization code.';
        const aadsts = aadstsCodeOf({ errorMessage: description });
        return {
          kind: 'identity_error',
          mailbox,
          error: error ?? 'missing_code',
          description,
          ...(aadsts === undefined ? {} : { aadsts }),
        };
      }

      const client = await clients.newClientFor(mailbox);
      const clientInfo = query.get('client_info');
      let signedInAs: string;
      let signedInAccount: string | undefined;
      let signedInTenant: string;
      let configuredTenant: string;
      try {
        // MSAL gets only the code and client_info: our state is checked above, and MSAL would try to
        // parse it as its own format.
        const result = await client.acquireTokenByCode(
          { code, scopes: [scope], redirectUri, codeVerifier, nonce },
          { code, ...(clientInfo === null ? {} : { client_info: clientInfo }) },
        );
        signedInAs = result.account?.username ?? '';
        signedInAccount = result.account?.homeAccountId;
        // MSAL's tenantId is the ID token's `tid` claim (empty without one).
        signedInTenant = result.tenantId;
        configuredTenant = tenantOfAuthority(result.authority);
      } catch (exchangeError) {
        return {
          kind: 'exchange_failed',
          mailbox,
          failure: clients.mapError(exchangeError),
        };
      }
      if (isTenantGuid(configuredTenant) && signedInTenant.toLowerCase() !== configuredTenant.toLowerCase()) {
        return {
          kind: 'wrong_tenant',
          mailbox,
          signedInTenant: signedInTenant === '' ? '(no tenant)' : signedInTenant,
          configuredTenant,
        };
      }
      if (signedInAs.toLowerCase() !== mailbox) {
        return {
          kind: 'wrong_account',
          mailbox,
          signedInAs: signedInAs === '' ? '(unknown account)' : signedInAs,
        };
      }
      // A user deleted and created again under the same address is a new account: the sign-in just made
      // is the one to keep, or a refresh could pick the old account's dead refresh token.
      const cache = client.getTokenCache();
      for (const account of await cache.getAllAccounts())
        if (account.homeAccountId !== signedInAccount) await cache.removeAccount(account);
      const connectedAt = new Date(now());
      await options.onConnected(mailbox, connectedAt);
      return { kind: 'connected', mailbox, connectedAt };
    },
  };
}

/**
 * The tenant the code was redeemed against: MSAL's authority is `<authority host>/<RELAY_TENANT_ID>/`, so
 * this is the configured tenant exactly as the client used it.
 */
function tenantOfAuthority(authority: string): string {
  return new URL(authority).pathname.split('/').find((segment) => segment !== '') ?? '';
}
