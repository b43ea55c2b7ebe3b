import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { SecretClient } from '@azure/keyvault-secrets';
import { ConfidentialClientApplication, CryptoProvider } from '@azure/msal-node';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import type { NodemailerError } from 'nodemailer/lib/errors';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type IdentityPeer, startIdentityPeer, submitSignInForm } from '../peers/identityPeer.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { type SmtpPeer, startSmtpPeer } from '../peers/smtpPeer.ts';
import { createTestCertificate } from '../peers/testCertificate.ts';

/** These tests prove each peer against the real client library the relay uses, not against our own reading. */

const OUTLOOK_DEFAULT_SCOPE = 'https://outlook.office365.com/.default';
const SMTP_SEND_SCOPE = 'https://outlook.office365.com/SMTP.Send';
const VAULT_SCOPE = 'https://vault.azure.net/.default';
const MAILBOX = 'relay@contoso.onmicrosoft.com';

async function rejectionOf(promise: Promise<unknown>): Promise<NodemailerError> {
  try {
    await promise;
  } catch (error) {
    return error as NodemailerError;
  }
  throw new Error('Expected the promise to reject');
}

function smtpTransport(peer: SmtpPeer, accessToken: string, host = peer.host, user = MAILBOX) {
  return nodemailer.createTransport({
    host,
    port: peer.port,
    secure: false,
    requireTLS: true,
    auth: { type: 'OAuth2', user, accessToken },
  });
}

/** One pooled connection, which stays logged in after a message until the pool is closed. */
function pooledSmtpTransport(peer: SmtpPeer, user = MAILBOX) {
  return nodemailer.createTransport({
    pool: true,
    maxConnections: 1,
    host: peer.host,
    port: peer.port,
    secure: false,
    requireTLS: true,
    auth: { type: 'OAuth2', user, accessToken: 'pooled-token' },
  });
}

/** Exchange Online's reply, word for word, to a From the login holds no right on. */
function sendAsDeniedResponse(authUser: string, from: string): string {
  return (
    `554 5.2.252 SendAsDenied; ${authUser} not allowed to send as ${from}; ` +
    'STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; ' +
    'Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.'
  );
}

/** Speaks SMTP by hand, to send what nodemailer never would (AUTH before STARTTLS, MAIL before AUTH). */
async function rawSmtpReplies(port: number, commands: string[]): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  let buffered = '';
  const nextReply = async (): Promise<string> => {
    // A reply ends with a line whose code is followed by a space (multi-line replies use a dash).
    while (!/^\d{3} .*\r\n/m.test(buffered)) {
      const [chunk] = (await once(socket, 'data')) as [string];
      buffered += chunk;
    }
    const end = buffered.search(/^\d{3} .*\r\n/m);
    const lineEnd = buffered.indexOf('\r\n', end) + 2;
    const reply = buffered.slice(0, lineEnd);
    buffered = buffered.slice(lineEnd);
    return reply.trimEnd();
  };
  const replies = [await nextReply()];
  for (const command of commands) {
    socket.write(`${command}\r\n`);
    replies.push(await nextReply());
  }
  socket.destroy();
  return replies;
}

describe('smtp peer with nodemailer over STARTTLS + XOAUTH2', () => {
  let smtp: SmtpPeer;

  beforeAll(async () => {
    smtp = await startSmtpPeer();
  });

  afterAll(async () => {
    await smtp.close();
  });

  it.each(['127.0.0.1', 'localhost'])('delivers a message when connecting to %s', async (host) => {
    smtp.reset();
    const transport = smtpTransport(smtp, 'token-for-relay', host);
    const info = await transport.sendMail({
      from: MAILBOX,
      to: ['alice@example.com', 'bob@example.com'],
      subject: 'Relay self-test',
      text: 'Hello through the loopback Exchange.',
    });
    transport.close();

    expect(info.accepted).toEqual(['alice@example.com', 'bob@example.com']);
    const [message] = await smtp.waitForMessages(1);
    expect(message).toMatchObject({
      envelopeFrom: MAILBOX,
      envelopeTo: ['alice@example.com', 'bob@example.com'],
      authUser: MAILBOX,
      accessToken: 'token-for-relay',
    });
    const parsed = await simpleParser(message?.raw ?? Buffer.alloc(0));
    expect(parsed.subject).toBe('Relay self-test');
    expect(smtp.authAttempts).toEqual([{ user: MAILBOX, accessToken: 'token-for-relay', accepted: true }]);
  });

  it('hands a scripted 535 5.7.139 to nodemailer as responseCode and response', async () => {
    smtp.reset();
    const text = '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.';
    smtp.replyNext({ stage: 'auth', code: 535, message: text });
    const transport = smtpTransport(smtp, 'token-for-relay');

    const error = await rejectionOf(
      transport.sendMail({ from: MAILBOX, to: 'alice@example.com', text: 'x' }),
    );
    transport.close();

    expect(error.responseCode).toBe(535);
    expect(error.response).toBe(`535 ${text}`);
    expect(error.code).toBe('EAUTH');
    expect(smtp.authAttempts).toEqual([{ user: MAILBOX, accessToken: 'token-for-relay', accepted: false }]);
    expect(smtp.messages).toHaveLength(0);
  });

  it('refuses a token the authorize hook rejects with 535 5.7.3', async () => {
    const strict = await startSmtpPeer({ authorize: (_user, token) => token === 'the-only-good-token' });
    const transport = smtpTransport(strict, 'stale-token');

    const error = await rejectionOf(
      transport.sendMail({ from: MAILBOX, to: 'alice@example.com', text: 'x' }),
    );
    transport.close();
    await strict.close();

    expect(error.responseCode).toBe(535);
    expect(error.response).toBe('535 5.7.3 Authentication unsuccessful');
  });

  it('answers scripted MAIL, RCPT and DATA failures with the exact code and text, in order', async () => {
    smtp.reset();
    const sendAs = '5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied';
    smtp.replyNext({ stage: 'data', code: 554, message: sendAs });
    smtp.replyNext({ stage: 'mail', code: 432, message: '4.3.2 Concurrent connections limit exceeded' });
    smtp.replyNext({ stage: 'rcpt', code: 451, message: '4.7.0 Temporary server error', times: 2 });
    const transport = smtpTransport(smtp, 'token-for-relay');
    const send = () => transport.sendMail({ from: MAILBOX, to: 'alice@example.com', text: 'x' });

    const mailError = await rejectionOf(send());
    const rcptError = await rejectionOf(send());
    const rcptAgain = await rejectionOf(send());
    const dataError = await rejectionOf(send());
    await send();
    transport.close();

    expect(mailError).toMatchObject({
      responseCode: 432,
      response: '432 4.3.2 Concurrent connections limit exceeded',
    });
    expect(rcptError).toMatchObject({ responseCode: 451, response: '451 4.7.0 Temporary server error' });
    expect(rcptAgain.responseCode).toBe(451);
    expect(dataError).toMatchObject({ responseCode: 554, response: `554 ${sendAs}`, permanent: true });
    expect(smtp.messages).toHaveLength(1);
  });

  it('refuses AUTH before STARTTLS and MAIL before AUTH, like Exchange Online', async () => {
    const replies = await rawSmtpReplies(smtp.port, [
      'EHLO relay.test',
      'MAIL FROM:<relay@contoso.onmicrosoft.com>',
      `AUTH XOAUTH2 ${Buffer.from(`user=${MAILBOX}\x01auth=Bearer abc\x01\x01`).toString('base64')}`,
    ]);

    expect(replies[0]).toMatch(/^220 /);
    expect(replies[1]).toContain('STARTTLS');
    expect(replies[1]).toContain('AUTH XOAUTH2');
    expect(replies[1]).toContain('SIZE 157286400');
    expect(replies[2]).toBe('530 5.7.57 Client not authenticated to send mail');
    expect(replies[3]).toMatch(/^538 /);
  });

  it('counts concurrent authenticated connections per user for a pooled transport', async () => {
    smtp.reset();
    smtp.setCommandLatency(20);
    const pool = nodemailer.createTransport({
      pool: true,
      maxConnections: 2,
      host: smtp.host,
      port: smtp.port,
      secure: false,
      requireTLS: true,
      auth: { type: 'OAuth2', user: MAILBOX, accessToken: 'pooled-token' },
    });

    await Promise.all(
      Array.from({ length: 6 }, (_, index) =>
        pool.sendMail({ from: MAILBOX, to: `user${index}@example.com`, text: `message ${index}` }),
      ),
    );
    pool.close();
    await smtp.waitForNoOpenConnections();

    expect(smtp.messages).toHaveLength(6);
    expect(smtp.connectionCount).toBe(2);
    expect(smtp.peakOpenConnectionsByUser.get(MAILBOX)).toBe(2);
    expect(smtp.openConnections).toBe(0);
  });

  it('waitForMessages rejects with a clear message on timeout', async () => {
    smtp.reset();
    await expect(smtp.waitForMessages(1, 50)).rejects.toThrow(
      'SMTP peer received 0 of 1 expected message(s) within 50 ms',
    );
  });
});

describe('smtp peer send rights (checked after DATA) and per-mailbox limits, as Exchange Online has them', () => {
  const SHARED_MAILBOX = 'shared@contoso.com';
  const MANAGER = 'manager@contoso.com';
  let smtp: SmtpPeer;

  beforeAll(async () => {
    smtp = await startSmtpPeer();
  });

  afterAll(async () => {
    await smtp.close();
  });

  beforeEach(() => {
    smtp.revokeSendRights();
    smtp.reset();
  });

  /** Sends one message as MAILBOX with these From and Sender headers; resolves with the error, if any. */
  async function sendWithOriginators(from: string | { name: string; address: string }, sender?: string) {
    const transport = smtpTransport(smtp, 'token-for-relay');
    try {
      await transport.sendMail({ from, sender, to: 'alice@example.com', text: 'x' });
      return undefined;
    } catch (error) {
      return error as NodemailerError;
    } finally {
      transport.close();
    }
  }

  it('refuses a From other than the login with 554 5.2.252 after the whole message, and keeps nothing', async () => {
    const error = await sendWithOriginators('ceo@contoso.com');

    // EMESSAGE: nodemailer had sent the message and the terminating dot before the refusal came.
    expect(error).toMatchObject({
      code: 'EMESSAGE',
      command: 'DATA',
      responseCode: 554,
      response: sendAsDeniedResponse(MAILBOX, 'ceo@contoso.com'),
      permanent: true,
    });
    expect(smtp.messages).toHaveLength(0);
    expect(smtp.messagesByUser.size).toBe(0);
    expect(smtp.sendAsRefusals).toEqual([{ authUser: MAILBOX, from: 'ceo@contoso.com' }]);
  });

  it('accepts a From the login holds Send As on, unless Sender names someone other than the From', async () => {
    smtp.grantSendAs(MAILBOX, SHARED_MAILBOX);

    const withoutSender = await sendWithOriginators({ name: 'Shared, Team', address: SHARED_MAILBOX });
    const senderIsFrom = await sendWithOriginators(SHARED_MAILBOX, SHARED_MAILBOX);
    const senderIsLogin = await sendWithOriginators(SHARED_MAILBOX, MAILBOX);

    expect(withoutSender).toBeUndefined();
    expect(senderIsFrom).toBeUndefined();
    expect(senderIsLogin?.response).toBe(sendAsDeniedResponse(MAILBOX, SHARED_MAILBOX));
    expect(smtp.messages.map((message) => message.authUser)).toEqual([MAILBOX, MAILBOX]);
    expect(smtp.sendAsRefusals).toEqual([{ authUser: MAILBOX, from: SHARED_MAILBOX, sender: MAILBOX }]);
  });

  it('takes grants from its options case-insensitively, keeps them across reset, and revokes them all', async () => {
    const configured = await startSmtpPeer({
      sendAs: { 'Relay@Contoso.onmicrosoft.com': ['Shared@Contoso.com'] },
    });
    const send = () =>
      smtpTransport(configured, 'token-for-relay').sendMail({
        from: 'SHARED@contoso.com',
        to: 'alice@example.com',
        text: 'x',
      });

    await send();
    configured.reset();
    await send();
    configured.revokeSendRights();
    const error = await rejectionOf(send());
    await configured.close();

    expect(configured.messages).toHaveLength(1);
    expect(error.responseCode).toBe(554);
    expect(configured.sendAsRefusals).toEqual([{ authUser: MAILBOX, from: 'SHARED@contoso.com' }]);
  });

  it('accepts on behalf only with a Sender header naming the login and an on-behalf grant', async () => {
    const beforeGrant = await sendWithOriginators(MANAGER, MAILBOX);
    smtp.grantSendOnBehalf(MAILBOX, MANAGER);
    const onBehalf = await sendWithOriginators(MANAGER, MAILBOX);
    const withoutSender = await sendWithOriginators(MANAGER);
    const senderIsSomeoneElse = await sendWithOriginators(MANAGER, 'assistant@contoso.com');

    expect(onBehalf).toBeUndefined();
    for (const refused of [beforeGrant, withoutSender, senderIsSomeoneElse]) {
      expect(refused?.response).toBe(sendAsDeniedResponse(MAILBOX, MANAGER));
    }
    expect(smtp.messages).toHaveLength(1);
    const kept = await simpleParser(smtp.messages[0]?.raw ?? Buffer.alloc(0));
    expect(kept.from?.value).toEqual([{ address: MANAGER, name: '' }]);
    expect(kept.headers.get('sender')).toMatchObject({ value: [{ address: MAILBOX, name: '' }] });
    expect(smtp.sendAsRefusals).toEqual([
      { authUser: MAILBOX, from: MANAGER, sender: MAILBOX },
      { authUser: MAILBOX, from: MANAGER },
      { authUser: MAILBOX, from: MANAGER, sender: 'assistant@contoso.com' },
    ]);
  });

  it('reads From and Sender through encoded words, quoted commas, folded lines and header case, not the body', async () => {
    smtp.grantSendOnBehalf(MAILBOX, MANAGER);
    const transport = smtpTransport(smtp, 'token-for-relay');
    const sendRaw = (headers: string, body = 'x') =>
      transport.sendMail({
        envelope: { from: MAILBOX, to: ['alice@example.com'] },
        raw: `${headers}\r\nTo: alice@example.com\r\nSubject: originators\r\n\r\n${body}\r\n`,
      });

    await sendRaw('FROM: =?utf-8?Q?Gr=C3=BC=C3=9Fe_vom_Relay?=\r\n <RELAY@contoso.onmicrosoft.com>');
    await sendRaw(`From: "Doe, Jane" <${MANAGER}>\r\nsender: "Relay, Ops"\r\n\t<${MAILBOX}>`);
    const loginAsDisplayName = await rejectionOf(sendRaw(`From: "${MAILBOX}" <ceo@contoso.com>`));
    // On behalf of MANAGER would be granted, but a Sender line in the body is not a header.
    const senderInBody = await rejectionOf(sendRaw(`From: ${MANAGER}`, `Sender: ${MAILBOX}`));
    transport.close();

    expect(smtp.messages).toHaveLength(2);
    expect(loginAsDisplayName.response).toBe(sendAsDeniedResponse(MAILBOX, 'ceo@contoso.com'));
    expect(senderInBody.response).toBe(sendAsDeniedResponse(MAILBOX, MANAGER));
    expect(smtp.sendAsRefusals).toEqual([
      { authUser: MAILBOX, from: 'ceo@contoso.com' },
      { authUser: MAILBOX, from: MANAGER },
    ]);
  });

  it('lets a scripted DATA reply win over the send-rights check', async () => {
    smtp.replyNext({ stage: 'data', code: 451, message: '4.7.0 Temporary server error' });

    const error = await sendWithOriginators('ceo@contoso.com');

    expect(error?.response).toBe('451 4.7.0 Temporary server error');
    expect(smtp.sendAsRefusals).toEqual([]);
  });

  it('counts accepted messages and successful logins per authenticated mailbox, in lower case', async () => {
    const secondMailbox = 'Second@Contoso.onmicrosoft.com';
    const pool = pooledSmtpTransport(smtp);
    await Promise.all(
      Array.from({ length: 3 }, (_, index) =>
        pool.sendMail({ from: MAILBOX, to: `user${index}@example.com`, text: `message ${index}` }),
      ),
    );
    pool.close();
    const second = smtpTransport(smtp, 'token-for-second', smtp.host, secondMailbox);
    await second.sendMail({ from: secondMailbox, to: 'alice@example.com', text: 'x' });
    await rejectionOf(second.sendMail({ from: 'ceo@contoso.com', to: 'alice@example.com', text: 'x' }));
    smtp.replyNext({ stage: 'auth', code: 535, message: '5.7.3 Authentication unsuccessful' });
    await rejectionOf(second.sendMail({ from: secondMailbox, to: 'alice@example.com', text: 'x' }));
    second.close();
    await smtp.waitForNoOpenConnections();

    expect(smtp.messagesByUser).toEqual(
      new Map([
        [MAILBOX, 3],
        ['second@contoso.onmicrosoft.com', 1],
      ]),
    );
    // The pool logged in once for three messages; the refused message still needed its own login.
    expect(smtp.loginsByUser).toEqual(
      new Map([
        [MAILBOX, 1],
        ['second@contoso.onmicrosoft.com', 2],
      ]),
    );
    smtp.reset();
    expect(smtp.messagesByUser.size).toBe(0);
    expect(smtp.loginsByUser.size).toBe(0);
  });

  it('answers a 4th concurrent login of one mailbox with 432 4.3.2 when limited to 3 sessions', async () => {
    const limited = await startSmtpPeer({ maxSessionsPerUser: 3 });
    const pools = Array.from({ length: 3 }, () => pooledSmtpTransport(limited));
    // Each pool keeps its connection logged in after the message, so three sessions stay open.
    await Promise.all(
      pools.map((pool, index) =>
        pool.sendMail({ from: MAILBOX, to: `user${index}@example.com`, text: `message ${index}` }),
      ),
    );
    const sendAlone = (user: string) => {
      const transport = smtpTransport(limited, 'token-for-relay', limited.host, user);
      return transport
        .sendMail({ from: user, to: 'alice@example.com', text: 'x' })
        .finally(() => transport.close());
    };

    const fourth = await rejectionOf(sendAlone(MAILBOX));
    await sendAlone('other@contoso.onmicrosoft.com');
    for (const pool of pools) pool.close();
    await limited.waitForNoOpenConnections();
    await sendAlone(MAILBOX);
    await limited.close();

    expect(fourth).toMatchObject({
      code: 'EAUTH',
      responseCode: 432,
      response: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded',
    });
    expect(limited.throttledLogins).toBe(1);
    expect(limited.peakOpenConnectionsByUser.get(MAILBOX)).toBe(3);
    expect(limited.loginsByUser.get(MAILBOX)).toBe(4);
    expect(limited.authAttempts.filter((attempt) => !attempt.accepted)).toHaveLength(1);
    expect(limited.messagesByUser.get(MAILBOX)).toBe(4);
  });
});

describe('identity peer with MSAL Node ConfidentialClientApplication', () => {
  let identity: IdentityPeer;
  const redirectUri = 'http://localhost:7071/api/auth/callback';

  beforeAll(async () => {
    identity = await startIdentityPeer();
    identity.registerClient({ clientId: 'relay-app', clientSecret: 'relay-secret' });
    identity.registerUser({ username: MAILBOX });
  });

  afterAll(async () => {
    await identity.close();
  });

  function secretApp(clientSecret = 'relay-secret'): ConfidentialClientApplication {
    return new ConfidentialClientApplication({
      auth: {
        clientId: 'relay-app',
        authority: identity.authority,
        clientSecret,
        knownAuthorities: [identity.host],
      },
    });
  }

  it('issues an app-only token for client credentials with a secret', async () => {
    const result = await secretApp().acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] });

    const token = result?.accessToken ?? '';
    expect(identity.issuedAccessTokens.get(token)).toMatchObject({
      clientId: 'relay-app',
      tenantId: identity.tenantId,
      scope: OUTLOOK_DEFAULT_SCOPE,
    });
    expect(identity.isValidAccessToken(token, { scope: OUTLOOK_DEFAULT_SCOPE })).toBe(true);
    expect(identity.isValidAccessToken(token, { scope: VAULT_SCOPE })).toBe(false);
    expect(identity.isValidAccessToken('forged')).toBe(false);
    expect(identity.tokenRequests.at(-1)).toMatchObject({
      grantType: 'client_credentials',
      clientId: 'relay-app',
      scope: OUTLOOK_DEFAULT_SCOPE,
      status: 200,
    });
  });

  it('refuses a wrong secret with AADSTS7000215', async () => {
    const failure = secretApp('not-the-secret').acquireTokenByClientCredential({
      scopes: [OUTLOOK_DEFAULT_SCOPE],
    });

    await expect(failure).rejects.toMatchObject({
      errorCode: 'invalid_client',
      errorMessage: expect.stringContaining('AADSTS7000215: Invalid client secret provided.'),
    });
  });

  it('refuses an unknown client with AADSTS700016', async () => {
    const app = new ConfidentialClientApplication({
      auth: {
        clientId: 'who-is-this',
        authority: identity.authority,
        clientSecret: 's',
        knownAuthorities: [identity.host],
      },
    });

    await expect(
      app.acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] }),
    ).rejects.toMatchObject({
      errorCode: 'unauthorized_client',
      errorMessage: expect.stringContaining('AADSTS700016'),
    });
  });

  it('accepts a certificate credential (PS256 client assertion with x5t#S256)', async () => {
    const clientCertificate = await createTestCertificate({ commonName: 'relay-app-credential' });
    identity.registerClient({ clientId: 'relay-cert-app', certificatePem: clientCertificate.cert });
    const app = new ConfidentialClientApplication({
      auth: {
        clientId: 'relay-cert-app',
        authority: identity.authority,
        knownAuthorities: [identity.host],
        clientCertificate: {
          thumbprintSha256: new X509Certificate(clientCertificate.cert).fingerprint256.replaceAll(':', ''),
          privateKey: clientCertificate.key,
        },
      },
    });

    const result = await app.acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] });

    expect(identity.isValidAccessToken(result?.accessToken ?? '', { scope: OUTLOOK_DEFAULT_SCOPE })).toBe(
      true,
    );
  });

  it('refuses an assertion signed by a key that is not registered', async () => {
    const registered = await createTestCertificate();
    const other = await createTestCertificate();
    identity.registerClient({ clientId: 'relay-rotated-app', certificatePem: registered.cert });
    const app = new ConfidentialClientApplication({
      auth: {
        clientId: 'relay-rotated-app',
        authority: identity.authority,
        knownAuthorities: [identity.host],
        clientCertificate: {
          thumbprintSha256: new X509Certificate(registered.cert).fingerprint256.replaceAll(':', ''),
          privateKey: other.key,
        },
      },
    });

    await expect(
      app.acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] }),
    ).rejects.toMatchObject({
      errorCode: 'invalid_client',
      errorMessage: expect.stringContaining('AADSTS700027'),
    });
  });

  it('runs the authorization code flow with PKCE, then refreshes and rotates the refresh token', async () => {
    const app = secretApp();
    const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
    const authorizeUrl = await app.getAuthCodeUrl({
      scopes: [SMTP_SEND_SCOPE],
      redirectUri,
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
      state: 'opaque-state',
      nonce: 'nonce-123',
      loginHint: MAILBOX,
    });

    const callback = await submitSignInForm(authorizeUrl, { username: MAILBOX });
    expect(callback.origin + callback.pathname).toBe(redirectUri);
    expect(callback.searchParams.get('state')).toBe('opaque-state');
    const code = callback.searchParams.get('code') ?? '';

    // The relay checks its own state; MSAL would parse a state it did not create as its own format.
    const signedIn = await app.acquireTokenByCode({
      code,
      scopes: [SMTP_SEND_SCOPE],
      redirectUri,
      codeVerifier: verifier,
      nonce: 'nonce-123',
    });
    expect(signedIn.account?.username).toBe(MAILBOX);
    expect(
      identity.isValidAccessToken(signedIn.accessToken, { scope: SMTP_SEND_SCOPE, username: MAILBOX }),
    ).toBe(true);
    expect(
      identity.isValidAccessToken(signedIn.accessToken, { username: 'someone.else@contoso.onmicrosoft.com' }),
    ).toBe(false);

    const refreshTokensInCache = (): string[] =>
      Object.values(
        (JSON.parse(app.getTokenCache().serialize()) as { RefreshToken: Record<string, { secret: string }> })
          .RefreshToken,
      ).map((entry) => entry.secret);
    const [firstRefreshToken] = refreshTokensInCache();
    expect(firstRefreshToken).toBeTruthy();

    const account = signedIn.account;
    if (!account) throw new Error('MSAL cached no account');
    const refreshed = await app.acquireTokenSilent({
      account,
      scopes: [SMTP_SEND_SCOPE],
      forceRefresh: true,
    });

    expect(refreshed.accessToken).not.toBe(signedIn.accessToken);
    expect(
      identity.isValidAccessToken(refreshed.accessToken, { scope: SMTP_SEND_SCOPE, username: MAILBOX }),
    ).toBe(true);
    expect(identity.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', status: 200 });
    expect(refreshTokensInCache()).not.toContain(firstRefreshToken);

    // A code is single use, as in Entra.
    await expect(
      app.acquireTokenByCode({ code, scopes: [SMTP_SEND_SCOPE], redirectUri, codeVerifier: verifier }),
    ).rejects.toMatchObject({
      errorCode: 'invalid_grant',
      errorMessage: expect.stringContaining('AADSTS54005'),
    });
  });

  it('refuses a wrong PKCE verifier with AADSTS501481', async () => {
    const app = secretApp();
    const { challenge } = await new CryptoProvider().generatePkceCodes();
    const authorizeUrl = await app.getAuthCodeUrl({
      scopes: [SMTP_SEND_SCOPE],
      redirectUri,
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
    });
    const callback = await submitSignInForm(authorizeUrl, { username: MAILBOX });

    await expect(
      app.acquireTokenByCode({
        code: callback.searchParams.get('code') ?? '',
        scopes: [SMTP_SEND_SCOPE],
        redirectUri,
        codeVerifier: 'a'.repeat(43),
      }),
    ).rejects.toMatchObject({ errorMessage: expect.stringContaining('AADSTS501481') });
  });

  it('redirects with access_denied when the user declines', async () => {
    const authorizeUrl = await secretApp().getAuthCodeUrl({
      scopes: [SMTP_SEND_SCOPE],
      redirectUri,
      state: 's1',
    });

    const callback = await submitSignInForm(authorizeUrl, { username: MAILBOX, deny: true });

    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('error_description')).toMatch(/^AADSTS65004: User declined to consent/);
    expect(callback.searchParams.get('state')).toBe('s1');
    expect(callback.searchParams.has('code')).toBe(false);
  });

  it('answers a revoked refresh token with invalid_grant AADSTS700082', async () => {
    const app = secretApp();
    const authorizeUrl = await app.getAuthCodeUrl({ scopes: [SMTP_SEND_SCOPE], redirectUri });
    const callback = await submitSignInForm(authorizeUrl, { username: MAILBOX });
    const signedIn = await app.acquireTokenByCode({
      code: callback.searchParams.get('code') ?? '',
      scopes: [SMTP_SEND_SCOPE],
      redirectUri,
    });
    const account = signedIn.account;
    if (!account) throw new Error('MSAL cached no account');

    identity.revokeRefreshTokensFor(MAILBOX);

    await expect(
      app.acquireTokenSilent({ account, scopes: [SMTP_SEND_SCOPE], forceRefresh: true }),
    ).rejects.toMatchObject({
      errorCode: 'invalid_grant',
      errorMessage: expect.stringContaining('AADSTS700082'),
    });
  });

  it('delays token answers by the configured response delay', async () => {
    identity.setResponseDelay(150);
    const started = performance.now();
    try {
      await secretApp().acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] });
    } finally {
      identity.setResponseDelay(0);
    }
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });

  it('serves scripted failures, and MSAL then throttles the same request without calling the peer', async () => {
    const app = secretApp();
    identity.failNext({
      status: 503,
      error: 'temporarily_unavailable',
      error_description:
        'AADSTS50196: The server terminated an operation because it encountered a client request loop.',
      error_codes: [50196],
    });
    const requestsBefore = identity.tokenRequests.length;

    await expect(
      app.acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] }),
    ).rejects.toMatchObject({
      errorMessage: expect.stringContaining('AADSTS50196'),
    });
    // MSAL remembers a 429/5xx per request for Retry-After seconds (60 without the header, and 0 counts as
    // absent): the retry fails from MSAL's own cache and never reaches the identity provider.
    await expect(
      app.acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] }),
    ).rejects.toMatchObject({
      errorMessage: expect.stringContaining('AADSTS50196'),
    });
    expect(identity.tokenRequests.length - requestsBefore).toBe(1);

    // A fresh application instance has its own throttling cache.
    await expect(
      secretApp().acquireTokenByClientCredential({ scopes: [OUTLOOK_DEFAULT_SCOPE] }),
    ).resolves.toBeTruthy();
  });
});

describe('key vault peer with SecretClient', () => {
  let identity: IdentityPeer;
  let vault: KeyVaultPeer;
  let client: SecretClient;

  beforeAll(async () => {
    identity = await startIdentityPeer();
    identity.registerClient({ clientId: 'relay-app', clientSecret: 'relay-secret' });
    vault = await startKeyVaultPeer({
      authority: identity.authority,
      authorize: (token) => identity.isValidAccessToken(token, { scope: VAULT_SCOPE }),
    });
    const msal = new ConfidentialClientApplication({
      auth: {
        clientId: 'relay-app',
        authority: identity.authority,
        clientSecret: 'relay-secret',
        knownAuthorities: [identity.host],
      },
    });
    // A TokenCredential backed by the identity peer, so the vault sees real issued tokens.
    const credential: ConstructorParameters<typeof SecretClient>[1] = {
      async getToken(scopes) {
        const result = await msal.acquireTokenByClientCredential({
          scopes: Array.isArray(scopes) ? scopes : [scopes],
        });
        if (!result) throw new Error('MSAL returned no token');
        return {
          token: result.accessToken,
          expiresOnTimestamp: result.expiresOn?.getTime() ?? Date.now() + 60_000,
        };
      },
    };
    client = new SecretClient(vault.vaultUrl, credential, { disableChallengeResourceVerification: true });
  });

  afterAll(async () => {
    await vault.close();
    await identity.close();
  });

  it('sets, gets, lists and deletes secrets', async () => {
    const expiresOn = new Date(Date.now() + 86_400_000);
    const stored = await client.setSecret('smtp-refresh-token', 'rt-1', {
      contentType: 'text/plain',
      tags: { mailbox: MAILBOX },
      expiresOn,
    });
    expect(stored.properties.version).toMatch(/^[0-9a-f]{32}$/);
    expect(vault.requests[0]).toMatchObject({ method: 'PUT', authenticated: false, status: 401 });

    await client.setSecret('smtp-refresh-token', 'rt-2');
    const latest = await client.getSecret('smtp-refresh-token');
    expect(latest.value).toBe('rt-2');
    expect(vault.secretValue('smtp-refresh-token')).toBe('rt-2');
    expect(vault.secretVersions('smtp-refresh-token').map((version) => version.value)).toEqual([
      'rt-1',
      'rt-2',
    ]);

    const first = await client.getSecret('smtp-refresh-token', { version: stored.properties.version ?? '' });
    expect(first.value).toBe('rt-1');
    expect(first.properties.contentType).toBe('text/plain');
    expect(first.properties.tags).toEqual({ mailbox: MAILBOX });
    expect(first.properties.expiresOn?.getTime()).toBe(Math.floor(expiresOn.getTime() / 1000) * 1000);

    vault.putSecretDirect('smtp-client-secret', 'seeded');
    const names: string[] = [];
    for await (const properties of client.listPropertiesOfSecrets()) {
      names.push(properties.name);
    }
    expect(names.sort()).toEqual(['smtp-client-secret', 'smtp-refresh-token']);
    let versionCount = 0;
    for await (const _ of client.listPropertiesOfSecretVersions('smtp-refresh-token')) {
      versionCount += 1;
    }
    expect(versionCount).toBe(2);

    const poller = await client.beginDeleteSecret('smtp-client-secret');
    const deleted = await poller.pollUntilDone();
    expect(deleted.recoveryId).toBe(`${vault.vaultUrl}/deletedsecrets/smtp-client-secret`);
    expect(vault.secretValue('smtp-client-secret')).toBeUndefined();
    await expect(client.getSecret('smtp-client-secret')).rejects.toMatchObject({
      statusCode: 404,
      code: 'SecretNotFound',
    });
    await expect(client.setSecret('smtp-client-secret', 'again')).rejects.toMatchObject({ statusCode: 409 });
    await client.purgeDeletedSecret('smtp-client-secret');
    await client.setSecret('smtp-client-secret', 'again');

    expect(vault.countOperations('set')).toBe(4);
    expect(vault.countOperations('delete')).toBe(1);
  });

  it('follows nextLink when listing more secrets than one page holds', async () => {
    for (let index = 0; index < 30; index += 1) {
      vault.putSecretDirect(`paged-${index}`, `value-${index}`);
    }
    const names: string[] = [];
    for await (const page of client.listPropertiesOfSecrets().byPage({ maxPageSize: 10 })) {
      names.push(...page.map((properties) => properties.name));
    }
    expect(names.filter((name) => name.startsWith('paged-'))).toHaveLength(30);
  });

  it('refuses invalid names and oversized values like Key Vault', async () => {
    await expect(client.setSecret('not_valid', 'x')).rejects.toMatchObject({
      statusCode: 400,
      code: 'BadParameter',
    });
    await expect(client.setSecret('too-large', 'x'.repeat(25_601))).rejects.toMatchObject({
      statusCode: 400,
      code: 'BadParameter',
    });
    await client.setSecret('largest', 'x'.repeat(25_600));
  });

  it('has the SDK retry a scripted 429 (Retry-After honoured)', async () => {
    vault.putSecretDirect('throttled', 'eventually');
    const getsBefore = vault.countOperations('get');
    vault.failNext({ status: 429, times: 2 });

    const secret = await client.getSecret('throttled');

    expect(secret.value).toBe('eventually');
    expect(vault.countOperations('get') - getsBefore).toBe(3);
    expect(vault.requests.slice(-3).map((request) => request.status)).toEqual([429, 429, 200]);
  });

  it('refuses a token the identity peer did not issue for the vault', async () => {
    const forged = new SecretClient(
      vault.vaultUrl,
      { getToken: async () => ({ token: 'forged', expiresOnTimestamp: Date.now() + 60_000 }) },
      { disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } },
    );

    await expect(forged.getSecret('throttled')).rejects.toMatchObject({ statusCode: 401 });
  });
});
