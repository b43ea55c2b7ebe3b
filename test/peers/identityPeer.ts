import { createHash, createPublicKey, type KeyObject, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { delay, type JsonObject, readBody, sendHtml, sendJson, startHttpsServer } from './httpsServer.ts';
import { certificateJwk, certificateThumbprints, decodeJwt, signJwt, verifyJwtSignature } from './jwt.ts';
import { renderSignInPage } from './signInPage.ts';
import { sharedTestCertificate, type TestCertificate } from './testCertificate.ts';

export { type SignInOptions, submitSignInForm } from './signInPage.ts';

/**
 * A loopback stand-in for login.microsoftonline.com that the real MSAL Node ConfidentialClientApplication
 * talks to: OIDC discovery, the v2.0 token endpoint (client credentials with a secret or a certificate
 * assertion, authorization code with PKCE, refresh token) and a minimal sign-in page for the code flow.
 * Errors carry Entra's shape (error, error_description starting with the AADSTS code, error_codes).
 */

export interface IdentityPeerOptions {
  /** Defaults to the process-wide sharedTestCertificate(), which the vitest setup file trusts. */
  certificate?: TestCertificate;
  tenantId?: string;
  accessTokenLifetimeSeconds?: number;
}

export interface ClientRegistration {
  clientId: string;
  clientSecret?: string;
  /** Public certificate whose key signs the client_assertion JWT (RS256 or PS256, x5t or x5t#S256 header). */
  certificatePem?: string;
  /** Federated identity credentials: tokens from these issuers are accepted as the client assertion. */
  federatedCredentials?: FederatedCredentialRegistration[];
  /**
   * Application permissions with admin consent, put in app-only tokens' `roles` claim as Entra does, e.g.
   * `SMTP.SendAsApp`. None (no `roles` claim) is the RBAC for Applications setup, where Exchange decides.
   */
  appRoles?: string[];
}

/**
 * A federated identity credential as Entra stores it (issuer, subject, audiences), plus the public key the
 * issuer signs with: Entra finds that key through the issuer's OIDC discovery; the peer is simply told it.
 */
export interface FederatedCredentialRegistration {
  issuer: string;
  subject: string;
  /** Entra allows exactly one; `api://AzureADTokenExchange` by default. */
  audience?: string;
  /** PEM public key (or certificate) whose private key signs the issuer's tokens. */
  issuerPublicKeyPem: string;
}

/** How a confidential client proved itself on a token request. */
export type ClientAuthentication = 'secret' | 'certificate' | 'federated' | 'none';

export interface UserRegistration {
  /** The UPN, e.g. relay@contoso.onmicrosoft.com; matched case-insensitively like Entra. */
  username: string;
  /** Object id; a random GUID when omitted. */
  oid?: string;
  /**
   * Group object ids for the `groups` claim of the user's ID tokens; none (no claim) by default. Entra puts
   * at most 200 there before it sends an overage claim instead; more here makes a token cache outgrow
   * Key Vault's 25 KB in tests.
   */
  groups?: string[];
  /**
   * The `tid` of the user's ID tokens; the peer's tenant when omitted. Another value imitates a sign-in
   * whose ID token names another tenant than the one the relay is configured for.
   */
  idTokenTenantId?: string;
}

export interface RegisteredUser {
  username: string;
  oid: string;
  groups?: string[];
  idTokenTenantId?: string;
}

export type GrantType = 'client_credentials' | 'authorization_code' | 'refresh_token' | (string & {});

export interface TokenRequestRecord {
  grantType: GrantType;
  clientId: string;
  scope: string;
  at: Date;
  /** The HTTP status the peer answered with; set once the answer is sent. */
  status?: number;
  /** Set once the client was authenticated. */
  clientAuthentication?: ClientAuthentication;
  /** For a federated assertion: its issuer and subject, as a sign-in log shows them. */
  federatedIdentity?: { issuer: string; subject: string };
}

export interface IssuedAccessToken {
  clientId: string;
  tenantId: string;
  scope: string;
  /** Set for delegated (code / refresh) tokens, absent for app-only client-credentials tokens. */
  username?: string;
  expiresAt: Date;
}

export interface ExpectedAccessToken {
  /** One of the space-separated scopes the token was issued for. */
  scope?: string;
  /** Compared case-insensitively with a delegated token's user; app-only tokens have no user to compare. */
  username?: string;
}

/** A scripted token-endpoint failure, in Entra's error shape. */
export interface IdentityFailure {
  status: number;
  error: string;
  error_description: string;
  error_codes?: number[];
  suberror?: string;
  /** Sent as a Retry-After header when set. */
  retryAfterSeconds?: number;
  /** How many consecutive token requests fail this way; 1 by default. */
  times?: number;
}

export interface IdentityPeer {
  /** `https://localhost:PORT`. */
  authorityHost: string;
  /** `localhost:PORT`, for MSAL's `knownAuthorities` (which skips instance discovery). */
  host: string;
  tenantId: string;
  /** `${authorityHost}/${tenantId}`, MSAL's `auth.authority`. */
  authority: string;
  tokenEndpoint: string;
  registerClient(client: ClientRegistration): void;
  registerUser(user: UserRegistration): RegisteredUser;
  /** The user registered under this name, if any. */
  userNamed(username: string): RegisteredUser | undefined;
  /** Every refresh token issued so far to this user stops working (400 invalid_grant, AADSTS700082). */
  revokeRefreshTokensFor(username: string): void;
  tokenRequests: TokenRequestRecord[];
  issuedAccessTokens: Map<string, IssuedAccessToken>;
  /** True for a token this peer issued, not yet expired, matching what the resource expects. */
  isValidAccessToken(token: string, expected?: ExpectedAccessToken): boolean;
  failNext(failure: IdentityFailure): void;
  /** Delays every token-endpoint answer, to imitate a slow identity provider. */
  setResponseDelay(ms: number): void;
  close(): Promise<void>;
}

/** The tenant of a peer started without `tenantId`; also what the key vault peer's challenge names. */
export const DEFAULT_TENANT_ID = '8b8f5e3a-1d2c-4f6e-9a7b-0c1d2e3f4a5b';
const AUTHORIZATION_CODE_LIFETIME_MS = 10 * 60 * 1000;
const ID_TOKEN_LIFETIME_SECONDS = 3600;
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const CLOCK_SKEW_SECONDS = 300;
const FEDERATED_AUDIENCE = 'api://AzureADTokenExchange';

interface ClientRecord {
  clientId: string;
  clientSecret?: string;
  assertionKey?: { publicKey: KeyObject; x5t: string; x5tS256: string };
  federated?: { issuer: string; subject: string; audience: string; publicKey: KeyObject }[];
  appRoles?: string[];
}

interface AuthorizationCodeGrant {
  clientId: string;
  redirectUri: string;
  codeChallenge?: string;
  codeChallengeMethod?: string;
  user: RegisteredUser;
  scope: string;
  nonce?: string;
  expiresAt: number;
}

interface RefreshTokenGrant {
  clientId: string;
  user: RegisteredUser;
  scope: string;
  revoked: boolean;
}

/** An answer that ends the token request early, in Entra's error shape. */
class EntraError extends Error {
  readonly status: number;
  readonly body: JsonObject;

  constructor(status: number, error: string, aadstsCode: number, description: string, suberror?: string) {
    super(`AADSTS${aadstsCode}: ${description}`);
    this.status = status;
    this.body = {
      error,
      error_description: `AADSTS${aadstsCode}: ${description}`,
      error_codes: [aadstsCode],
      timestamp: entraTimestamp(),
      trace_id: randomUUID(),
      correlation_id: randomUUID(),
      ...(suberror ? { suberror } : {}),
    };
  }
}

/** Entra writes error timestamps as `2025-11-22 10:15:30Z`. */
function entraTimestamp(): string {
  return new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** The resource an access token is for: `https://outlook.office365.com/SMTP.Send` -> `https://outlook.office365.com`. */
function resourceOf(scope: string): string {
  const resourceScope = scope.split(' ').find((entry) => entry.includes('/'));
  return resourceScope
    ? resourceScope.slice(0, resourceScope.lastIndexOf('/'))
    : '00000003-0000-0000-c000-000000000000';
}

export async function startIdentityPeer(options: IdentityPeerOptions = {}): Promise<IdentityPeer> {
  const certificate = options.certificate ?? (await sharedTestCertificate());
  const tenantId = options.tenantId ?? DEFAULT_TENANT_ID;
  const accessTokenLifetimeSeconds = options.accessTokenLifetimeSeconds ?? 3600;
  const signingKeyId = certificateThumbprints(certificate.cert).x5t;

  const clients = new Map<string, ClientRecord>();
  const usersByName = new Map<string, RegisteredUser>();
  const authorizationCodes = new Map<string, AuthorizationCodeGrant>();
  const redeemedCodes = new Set<string>();
  const refreshTokens = new Map<string, RefreshTokenGrant>();
  const tokenRequests: TokenRequestRecord[] = [];
  const issuedAccessTokens = new Map<string, IssuedAccessToken>();
  const failures: IdentityFailure[] = [];
  let responseDelayMs = 0;

  // The origin is only known once listening; the handler reads these after start.
  let authorityHost = '';
  let issuer = '';
  let tokenEndpoint = '';

  function nowSeconds(): number {
    return Math.floor(Date.now() / 1000);
  }

  function clientInfo(user: RegisteredUser): string {
    return Buffer.from(JSON.stringify({ uid: user.oid, utid: tenantId })).toString('base64url');
  }

  function openIdConfiguration(): JsonObject {
    const base = `${authorityHost}/${tenantId}`;
    return {
      token_endpoint: tokenEndpoint,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      jwks_uri: `${base}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer,
      request_uri_parameter_supported: false,
      userinfo_endpoint: `${base}/openid/userinfo`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      http_logout_supported: true,
      frontchannel_logout_supported: true,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      claims_supported: [
        'sub',
        'iss',
        'aud',
        'exp',
        'iat',
        'nonce',
        'preferred_username',
        'name',
        'tid',
        'oid',
      ],
      tenant_region_scope: 'EU',
      cloud_instance_name: 'microsoftonline.com',
      cloud_graph_host_name: 'graph.windows.net',
      msgraph_host: 'graph.microsoft.com',
    };
  }

  function issueAccessToken(clientId: string, scope: string, user?: RegisteredUser): string {
    const appRoles = clients.get(clientId)?.appRoles;
    const issuedAt = nowSeconds();
    const expiresAt = issuedAt + accessTokenLifetimeSeconds;
    const delegatedClaims = user
      ? {
          oid: user.oid,
          upn: user.username,
          preferred_username: user.username,
          scp: scope
            .split(' ')
            .filter((entry) => entry.includes('/'))
            .map((entry) => entry.slice(entry.lastIndexOf('/') + 1))
            .join(' '),
        }
      : {};
    const token = signJwt(
      {
        aud: resourceOf(scope),
        iss: issuer,
        iat: issuedAt,
        nbf: issuedAt,
        exp: expiresAt,
        appid: clientId,
        azp: clientId,
        tid: tenantId,
        uti: randomToken(16),
        ver: '2.0',
        ...delegatedClaims,
        ...(user === undefined && appRoles !== undefined ? { roles: appRoles } : {}),
      },
      certificate.key,
      signingKeyId,
    );
    issuedAccessTokens.set(token, {
      clientId,
      tenantId,
      scope,
      ...(user ? { username: user.username } : {}),
      expiresAt: new Date(expiresAt * 1000),
    });
    return token;
  }

  function issueIdToken(clientId: string, user: RegisteredUser, nonce?: string): string {
    const issuedAt = nowSeconds();
    return signJwt(
      {
        aud: clientId,
        iss: issuer,
        iat: issuedAt,
        nbf: issuedAt,
        exp: issuedAt + ID_TOKEN_LIFETIME_SECONDS,
        // Entra's sub is pairwise: stable per user and application.
        sub: createHash('sha256').update(`${user.oid}:${clientId}`).digest('base64url'),
        oid: user.oid,
        tid: user.idTokenTenantId ?? tenantId,
        preferred_username: user.username,
        name: user.username,
        ver: '2.0',
        ...(nonce ? { nonce } : {}),
        ...(user.groups === undefined ? {} : { groups: user.groups }),
      },
      certificate.key,
      signingKeyId,
    );
  }

  /** The answer to a code or refresh grant: tokens for the user, with a fresh (rotated) refresh token. */
  function userTokenResponse(
    clientId: string,
    user: RegisteredUser,
    scope: string,
    nonce?: string,
  ): JsonObject {
    const refreshToken = randomToken(48);
    refreshTokens.set(refreshToken, { clientId, user, scope, revoked: false });
    return {
      token_type: 'Bearer',
      scope,
      expires_in: accessTokenLifetimeSeconds,
      ext_expires_in: accessTokenLifetimeSeconds,
      access_token: issueAccessToken(clientId, scope, user),
      refresh_token: refreshToken,
      id_token: issueIdToken(clientId, user, nonce),
      client_info: clientInfo(user),
    };
  }

  function requireClient(clientId: string): ClientRecord {
    const client = clients.get(clientId);
    if (!client) {
      throw new EntraError(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
      );
    }
    return client;
  }

  function verifyClientAssertion(client: ClientRecord, assertion: string): void {
    const invalidClient = (code: number, description: string): EntraError =>
      new EntraError(401, 'invalid_client', code, description);
    const jwt = decodeJwt(assertion);
    if (!jwt) {
      throw invalidClient(50027, 'JWT token is invalid or malformed.');
    }
    const key = client.assertionKey;
    const presented = jwt.header['x5t#S256'] ?? jwt.header.x5t;
    if (!key || (presented !== key.x5tS256 && presented !== key.x5t)) {
      throw invalidClient(
        700027,
        `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${String(presented)}']`,
      );
    }
    if (!verifyJwtSignature(jwt, key.publicKey)) {
      throw invalidClient(700027, 'Client assertion failed signature validation.');
    }
    const { aud, iss, sub, exp, nbf } = jwt.claims;
    if (aud !== tokenEndpoint) {
      throw invalidClient(
        700212,
        `The audience '${String(aud)}' of the client assertion is not the token endpoint.`,
      );
    }
    if (iss !== client.clientId || sub !== client.clientId) {
      throw invalidClient(700021, 'Client assertion application identifier does not match client_id.');
    }
    const now = nowSeconds();
    if (
      typeof exp !== 'number' ||
      exp < now - CLOCK_SKEW_SECONDS ||
      (typeof nbf === 'number' && nbf > now + CLOCK_SKEW_SECONDS)
    ) {
      throw invalidClient(700024, 'Client assertion is not within its valid time range.');
    }
  }

  /**
   * A federated assertion is a token from a trusted issuer (for a managed identity: Entra itself), matched
   * on issuer, subject and audience exactly, with a valid signature and lifetime. Codes as Entra sends them.
   */
  function verifyFederatedAssertion(
    client: ClientRecord,
    jwt: NonNullable<ReturnType<typeof decodeJwt>>,
  ): { issuer: string; subject: string } {
    const invalidClient = (code: number, description: string): EntraError =>
      new EntraError(401, 'invalid_client', code, description);
    const { iss, sub, aud, exp, nbf } = jwt.claims;
    const byIssuer = (client.federated ?? []).filter((entry) => entry.issuer === iss);
    if (byIssuer.length === 0) {
      throw invalidClient(
        700211,
        `No matching federated identity record found for presented assertion issuer '${String(iss)}'.`,
      );
    }
    const bySubject = byIssuer.filter((entry) => entry.subject === sub);
    if (bySubject.length === 0) {
      throw invalidClient(
        700213,
        `No matching federated identity record found for presented assertion subject '${String(sub)}'.`,
      );
    }
    const audiences = Array.isArray(aud) ? aud : [aud];
    const match = bySubject.find((entry) => audiences.includes(entry.audience));
    if (match === undefined) {
      throw invalidClient(
        700212,
        `No matching federated identity record found for presented assertion audience '${String(aud)}'.`,
      );
    }
    if (!verifyJwtSignature(jwt, match.publicKey)) {
      throw invalidClient(50013, 'Assertion failed signature validation.');
    }
    const now = nowSeconds();
    if (
      typeof exp !== 'number' ||
      exp < now - CLOCK_SKEW_SECONDS ||
      (typeof nbf === 'number' && nbf > now + CLOCK_SKEW_SECONDS)
    ) {
      throw invalidClient(700024, 'Client assertion is not within its valid time range.');
    }
    return { issuer: match.issuer, subject: match.subject };
  }

  /** Confidential clients must prove who they are; a client registered without credentials is public. */
  function authenticateClient(form: URLSearchParams, record?: TokenRequestRecord): ClientRecord {
    const assertion = form.get('client_assertion');
    const assertedClientId = assertion ? decodeJwt(assertion)?.claims.iss : undefined;
    const clientId = form.get('client_id') ?? (typeof assertedClientId === 'string' ? assertedClientId : '');
    const client = requireClient(clientId);
    const secret = form.get('client_secret');
    if (assertion) {
      if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) {
        throw new EntraError(
          400,
          'invalid_request',
          900144,
          "The request body must contain the following parameter: 'client_assertion_type'.",
        );
      }
      const jwt = decodeJwt(assertion);
      // An assertion the app signed itself names the app as issuer; anything else must be federated.
      if (jwt !== undefined && jwt.claims.iss !== client.clientId && client.federated !== undefined) {
        const federatedIdentity = verifyFederatedAssertion(client, jwt);
        if (record) Object.assign(record, { clientAuthentication: 'federated', federatedIdentity });
        return client;
      }
      verifyClientAssertion(client, assertion);
      if (record) record.clientAuthentication = 'certificate';
    } else if (secret !== null) {
      if (client.clientSecret === undefined || secret !== client.clientSecret) {
        throw new EntraError(
          401,
          'invalid_client',
          7000215,
          `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
        );
      }
      if (record) record.clientAuthentication = 'secret';
    } else if (
      client.clientSecret !== undefined ||
      client.assertionKey !== undefined ||
      client.federated !== undefined
    ) {
      throw new EntraError(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }
    return client;
  }

  function clientCredentialsGrant(form: URLSearchParams, record: TokenRequestRecord): JsonObject {
    const client = authenticateClient(form, record);
    const scope = form.get('scope') ?? '';
    if (!scope.endsWith('/.default') || scope.includes(' ')) {
      throw new EntraError(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }
    return {
      token_type: 'Bearer',
      expires_in: accessTokenLifetimeSeconds,
      ext_expires_in: accessTokenLifetimeSeconds,
      access_token: issueAccessToken(client.clientId, scope),
    };
  }

  function authorizationCodeGrant(form: URLSearchParams): JsonObject {
    const client = authenticateClient(form);
    const code = form.get('code') ?? '';
    const grant = authorizationCodes.get(code);
    // Single use, as in Entra: a second redemption fails even if the first one failed.
    authorizationCodes.delete(code);
    if (redeemedCodes.has(code)) {
      throw new EntraError(
        400,
        'invalid_grant',
        54005,
        'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.',
      );
    }
    redeemedCodes.add(code);
    if (!grant || grant.clientId !== client.clientId || grant.expiresAt < Date.now()) {
      throw new EntraError(
        400,
        'invalid_grant',
        70000,
        "The provided value for the 'code' parameter is not valid.",
      );
    }
    if (form.get('redirect_uri') !== grant.redirectUri) {
      throw new EntraError(
        400,
        'invalid_grant',
        50011,
        `The redirect URI '${form.get('redirect_uri') ?? ''}' specified in the request does not match the redirect URIs configured for the application '${client.clientId}'.`,
      );
    }
    if (grant.codeChallenge !== undefined) {
      const verifier = form.get('code_verifier') ?? '';
      const derived =
        grant.codeChallengeMethod === 'plain'
          ? verifier
          : createHash('sha256').update(verifier).digest('base64url');
      if (derived !== grant.codeChallenge) {
        throw new EntraError(
          400,
          'invalid_grant',
          501481,
          'The Code_Verifier does not match the code_challenge supplied in the authorization request.',
        );
      }
    }
    return userTokenResponse(client.clientId, grant.user, grant.scope, grant.nonce);
  }

  function refreshTokenGrant(form: URLSearchParams): JsonObject {
    const client = authenticateClient(form);
    const grant = refreshTokens.get(form.get('refresh_token') ?? '');
    if (!grant || grant.clientId !== client.clientId) {
      throw new EntraError(
        400,
        'invalid_grant',
        9002313,
        'Invalid request. Request is malformed or invalid.',
      );
    }
    if (grant.revoked) {
      throw new EntraError(
        400,
        'invalid_grant',
        700082,
        `The refresh token has expired due to inactivity. The token was issued on ${new Date().toISOString()} and was inactive for 90.00:00:00.`,
      );
    }
    // A refresh may narrow the scopes (MSAL asks for the scopes of the silent request).
    const scope = form.get('scope') ?? grant.scope;
    return userTokenResponse(client.clientId, grant.user, scope);
  }

  async function handleToken(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const form = new URLSearchParams(await readBody(request));
    const record: TokenRequestRecord = {
      grantType: form.get('grant_type') ?? '',
      clientId: form.get('client_id') ?? '',
      scope: form.get('scope') ?? '',
      at: new Date(),
    };
    tokenRequests.push(record);
    await delay(responseDelayMs);

    const answer = (status: number, body: JsonObject, headers?: Record<string, string>): void => {
      record.status = status;
      sendJson(response, status, body, headers);
    };

    const failure = failures.shift();
    if (failure) {
      const { status, retryAfterSeconds, times: _times, ...body } = failure;
      const headers: Record<string, string> =
        retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
      answer(
        status,
        {
          ...body,
          timestamp: entraTimestamp(),
          trace_id: randomUUID(),
          correlation_id: randomUUID(),
        },
        headers,
      );
      return;
    }
    try {
      switch (record.grantType) {
        case 'client_credentials':
          answer(200, clientCredentialsGrant(form, record));
          return;
        case 'authorization_code':
          answer(200, authorizationCodeGrant(form));
          return;
        case 'refresh_token':
          answer(200, refreshTokenGrant(form));
          return;
        default:
          throw new EntraError(
            400,
            'unsupported_grant_type',
            70003,
            `The app requested an unsupported grant type '${record.grantType}'.`,
          );
      }
    } catch (error) {
      if (error instanceof EntraError) {
        answer(error.status, error.body);
        return;
      }
      throw error;
    }
  }

  function handleAuthorizePage(url: URL, response: ServerResponse): void {
    const clientId = url.searchParams.get('client_id') ?? '';
    if (!clients.has(clientId) || !url.searchParams.get('redirect_uri')) {
      sendHtml(
        response,
        400,
        renderSignInPage(
          url.pathname,
          new URLSearchParams(),
          `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenantId}'.`,
        ),
      );
      return;
    }
    sendHtml(response, 200, renderSignInPage(url.pathname, url.searchParams));
  }

  async function handleSignIn(url: URL, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const fields = new URLSearchParams(url.searchParams);
    for (const [name, value] of new URLSearchParams(await readBody(request))) {
      fields.set(name, value);
    }
    const redirectUri = fields.get('redirect_uri') ?? '';
    const clientId = fields.get('client_id') ?? '';
    const state = fields.get('state');
    if (!clients.has(clientId) || !redirectUri) {
      sendHtml(
        response,
        400,
        renderSignInPage(
          url.pathname,
          fields,
          `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${tenantId}'.`,
        ),
      );
      return;
    }
    const redirect = new URL(redirectUri);
    if (fields.get('deny') === '1') {
      redirect.searchParams.set('error', 'access_denied');
      redirect.searchParams.set(
        'error_description',
        `AADSTS65004: User declined to consent to access the app. Trace ID: ${randomUUID()}`,
      );
    } else {
      const username = fields.get('username') ?? '';
      const user = usersByName.get(username.toLowerCase());
      if (!user) {
        sendHtml(
          response,
          400,
          renderSignInPage(
            url.pathname,
            fields,
            `AADSTS50034: The user account ${username} does not exist in the ${tenantId} directory. To sign into this application, the account must be added to the directory.`,
          ),
        );
        return;
      }
      const code = randomToken(48);
      const codeChallenge = fields.get('code_challenge');
      const codeChallengeMethod = fields.get('code_challenge_method');
      const nonce = fields.get('nonce');
      authorizationCodes.set(code, {
        clientId,
        redirectUri,
        user,
        scope: fields.get('scope') ?? '',
        expiresAt: Date.now() + AUTHORIZATION_CODE_LIFETIME_MS,
        ...(codeChallenge ? { codeChallenge } : {}),
        ...(codeChallengeMethod ? { codeChallengeMethod } : {}),
        ...(nonce ? { nonce } : {}),
      });
      redirect.searchParams.set('code', code);
      redirect.searchParams.set('client_info', clientInfo(user));
    }
    if (state !== null) {
      redirect.searchParams.set('state', state);
    }
    response.writeHead(302, { location: redirect.toString(), 'content-length': 0 });
    response.end();
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', authorityHost);
    const [tenant, ...rest] = url.pathname.split('/').filter(Boolean);
    const route = `${request.method ?? 'GET'} /${rest.join('/')}`;
    if (tenant !== tenantId) {
      sendJson(
        response,
        400,
        new EntraError(
          400,
          'invalid_tenant',
          90002,
          `Tenant '${tenant ?? ''}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
        ).body,
      );
      return;
    }
    switch (route) {
      case 'GET /v2.0/.well-known/openid-configuration':
        sendJson(response, 200, openIdConfiguration());
        return;
      case 'GET /discovery/v2.0/keys':
        sendJson(response, 200, { keys: [certificateJwk(certificate.cert, signingKeyId)] });
        return;
      case 'POST /oauth2/v2.0/token':
        await handleToken(request, response);
        return;
      case 'GET /oauth2/v2.0/authorize':
        handleAuthorizePage(url, response);
        return;
      case 'POST /oauth2/v2.0/authorize':
        await handleSignIn(url, request, response);
        return;
      default:
        sendJson(response, 404, {
          error: 'not_found',
          error_description: `The identity peer has no route ${route}`,
        });
    }
  }

  const server = await startHttpsServer(certificate, handle);
  authorityHost = server.origin;
  issuer = `${authorityHost}/${tenantId}/v2.0`;
  tokenEndpoint = `${authorityHost}/${tenantId}/oauth2/v2.0/token`;

  return {
    authorityHost,
    host: new URL(authorityHost).host,
    tenantId,
    authority: `${authorityHost}/${tenantId}`,
    tokenEndpoint,
    tokenRequests,
    issuedAccessTokens,

    registerClient({ clientId, clientSecret, certificatePem, federatedCredentials, appRoles }) {
      clients.set(clientId, {
        clientId,
        ...(appRoles !== undefined ? { appRoles } : {}),
        ...(clientSecret !== undefined ? { clientSecret } : {}),
        ...(certificatePem !== undefined
          ? {
              assertionKey: {
                publicKey: createPublicKey(certificatePem),
                ...certificateThumbprints(certificatePem),
              },
            }
          : {}),
        ...(federatedCredentials !== undefined
          ? {
              federated: federatedCredentials.map((entry) => ({
                issuer: entry.issuer,
                subject: entry.subject,
                audience: entry.audience ?? FEDERATED_AUDIENCE,
                publicKey: createPublicKey(entry.issuerPublicKeyPem),
              })),
            }
          : {}),
      });
    },

    registerUser({ username, oid, groups, idTokenTenantId }) {
      const user: RegisteredUser = {
        username,
        oid: oid ?? randomUUID(),
        ...(groups === undefined ? {} : { groups }),
        ...(idTokenTenantId === undefined ? {} : { idTokenTenantId }),
      };
      usersByName.set(username.toLowerCase(), user);
      return user;
    },

    userNamed(username) {
      return usersByName.get(username.toLowerCase());
    },

    revokeRefreshTokensFor(username) {
      for (const grant of refreshTokens.values()) {
        if (grant.user.username.toLowerCase() === username.toLowerCase()) {
          grant.revoked = true;
        }
      }
    },

    isValidAccessToken(token, expected = {}) {
      const issued = issuedAccessTokens.get(token);
      if (!issued || issued.expiresAt.getTime() <= Date.now()) {
        return false;
      }
      if (expected.scope !== undefined && !issued.scope.split(' ').includes(expected.scope)) {
        return false;
      }
      if (expected.username !== undefined && issued.username !== undefined) {
        return issued.username.toLowerCase() === expected.username.toLowerCase();
      }
      return true;
    },

    failNext(failure) {
      for (let i = 0; i < (failure.times ?? 1); i += 1) {
        failures.push(failure);
      }
    },

    setResponseDelay(ms) {
      responseDelayMs = ms;
    },

    close: () => server.close(),
  };
}
