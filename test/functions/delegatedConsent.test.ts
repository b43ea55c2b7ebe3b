import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Timer } from '@azure/functions';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
// Imported for their registrations: the development host serves the consent routes to a real browser.
import '../../functions/oauthCallback.ts';
import '../../functions/oauthStart.ts';
import { bindHttp, functionApp, triggerHandler } from '../../functions/register.ts';
import { send as sendFunction } from '../../functions/send.ts';
import { status as statusFunction } from '../../functions/status.ts';
import { tokenRefresh } from '../../functions/tokenRefresh.ts';
import type { StatusReport } from '../../shared/delegated/statusReport.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { tokenCacheSecretName } from '../../shared/tokens/tokenCachePlugin.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { sharedTestCertificate } from '../peers/testCertificate.ts';
import { openKeyVaultStore } from '../support/keyVaultStore.ts';
import {
  appClientId,
  capturingContext,
  delegatedScope,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

const shared = 'shared@contoso.com';
const reports = 'reports@contoso.com';
const unconnected = 'unconnected@contoso.com';
const intruder = 'intruder@contoso.com';
const opsKey = 'caller-key-ops-0123456789';
const alertsKey = 'caller-key-alerts-0123456789';
const mailboxes = [
  { address: shared, mode: 'delegated' },
  { address: reports, mode: 'delegated' },
  { address: unconnected, mode: 'delegated' },
  { address: 'alerts@contoso.com', mode: 'app' },
];

let host: DevHost;
const hostLog: string[] = [];
let harness: RelayHarness;
let browser: BrowserContext;
let profileDirectory: string;

interface StoredSecret {
  value: string;
  tags: Record<string, string>;
}

async function storedSecrets(): Promise<Record<string, StoredSecret>> {
  try {
    return (
      JSON.parse(await readFile(harness.secretsPath, 'utf8')) as { secrets: Record<string, StoredSecret> }
    ).secrets;
  } catch {
    return {};
  }
}

function refreshTokensIn(cacheValue: string | undefined): string[] {
  const cache = JSON.parse(cacheValue ?? '{}') as { RefreshToken?: Record<string, { secret: string }> };
  return Object.values(cache.RefreshToken ?? {}).map((token) => token.secret);
}

function tokenGrants(grantType: string): number {
  return harness.identity.tokenRequests.filter((request) => request.grantType === grantType).length;
}

interface BrowserOutcome {
  status: number;
  heading: string;
  text: string;
  callbackUrl: string;
  authorizeUrl: URL;
  bindingCookie: string;
}

/** Opens the start URL in Chromium, signs in on the identity peer's page, and reads the page the callback shows. */
async function connectInBrowser(mailbox: string, signInAs: string, deny = false): Promise<BrowserOutcome> {
  const page = await browser.newPage();
  try {
    const callback = page.waitForResponse((response) =>
      response.url().startsWith(`${host.origin}/api/oauth/callback`),
    );
    await page.goto(`${host.origin}/api/oauth/start?mailbox=${encodeURIComponent(mailbox)}`);
    const authorizeUrl = new URL(page.url());
    const [binding] = (await browser.cookies(`${host.origin}/api/oauth/callback`)).filter((cookie) =>
      cookie.name.startsWith('relay-consent-'),
    );
    await page.fill('#username', signInAs);
    await page.click(deny ? '#decline' : '#sign-in');
    const response = await callback;
    await page.waitForLoadState('load');
    return {
      status: response.status(),
      heading: await page.locator('h1').innerText(),
      text: await page.locator('body').innerText(),
      callbackUrl: response.url(),
      authorizeUrl,
      bindingCookie: binding === undefined ? '' : `${binding.name}=${binding.value}`,
    };
  } finally {
    await page.close();
  }
}

async function send(from: string, apiKey = opsKey) {
  const { context } = capturingContext();
  const response = await bindHttp(sendFunction, harness.runtime)(
    jsonRequest(
      'http://localhost:7071/api/send',
      { from, to: 'ops@contoso.com', subject: 'Report', text: 'ok' },
      {
        'x-relay-key': apiKey,
      },
    ),
    context,
  );
  return { status: response.status, body: response.jsonBody as Record<string, Record<string, unknown>> };
}

const openVaultStore = (vault: KeyVaultPeer) => openKeyVaultStore(vault);

async function runTimer(): Promise<string[]> {
  const { context, lines } = capturingContext('tokenRefresh');
  const at = new Date().toISOString();
  const timer: Timer = {
    isPastDue: false,
    schedule: { adjustForDST: true },
    scheduleStatus: { last: at, next: at, lastUpdated: at },
  };
  await triggerHandler(tokenRefresh, harness.runtime)(timer, context);
  return lines;
}

async function status(): Promise<StatusReport> {
  const { context } = capturingContext('status');
  const response = await bindHttp(statusFunction, harness.runtime)(
    jsonRequest('http://localhost:7071/api/status', '', {}, 'GET'),
    context,
  );
  expect(response.status).toBe(200);
  return response.jsonBody as StatusReport;
}

beforeAll(async () => {
  // The host starts first: the relay's configuration needs its origin (RELAY_PUBLIC_BASE_URL).
  host = await startDevHost({
    functionApp,
    runtime: async () => harness.runtime,
    port: 0,
    triggers: false,
    log: (line) => hostLog.push(line),
  });
  harness = await startRelayHarness({
    settings: { RELAY_PUBLIC_BASE_URL: host.origin, RELAY_MAILBOXES: JSON.stringify(mailboxes) },
    callers: [
      { name: 'ops-app', apiKey: opsKey, senders: [shared, reports, unconnected] },
      { name: 'alerts-app', apiKey: alertsKey, senders: ['alerts@contoso.com'] },
    ],
  });
  for (const username of [shared, reports, unconnected, intruder])
    harness.identity.registerUser({ username });
  profileDirectory = await mkdtemp(join(tmpdir(), 'relay-chromium-'));
  browser = await chromium.launchPersistentContext(profileDirectory, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    // The identity peer's certificate is self-signed: trusted by this browser only, nothing else.
    ignoreHTTPSErrors: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await harness?.close();
  await host?.close();
  if (profileDirectory !== undefined) await rm(profileDirectory, { recursive: true, force: true });
});

describe('connecting a delegated mailbox in a browser', () => {
  let successfulCallback: BrowserOutcome;

  it('signs in through the authorize page, stores the sign-in, and sends with a token issued to that user', async () => {
    const outcome = await connectInBrowser(shared, shared);
    successfulCallback = outcome;

    expect(outcome.authorizeUrl.origin).toBe(harness.identity.authorityHost);
    const query = outcome.authorizeUrl.searchParams;
    expect(query.get('redirect_uri')).toBe(`${host.origin}/api/oauth/callback`);
    expect(query.get('login_hint')).toBe(shared);
    expect(query.get('prompt')).toBe('select_account');
    expect(query.get('code_challenge_method')).toBe('S256');
    expect(query.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(query.get('scope')?.split(' ')).toEqual(
      expect.arrayContaining([delegatedScope, 'offline_access', 'openid', 'profile']),
    );

    expect(outcome.status).toBe(200);
    expect(outcome.heading).toBe('Mailbox connected');
    expect(outcome.text).toMatch(/shared@contoso\.com is connected to the mail relay at \d{4}-\d\d-\d\dT/);
    const code = new URL(outcome.callbackUrl).searchParams.get('code') ?? '';
    expect(code.length).toBeGreaterThan(20);
    expect(outcome.text).not.toContain(code);
    expect(hostLog.join('\n')).toContain('oauth callback -> connected (shared@contoso.com)');
    expect(hostLog.join('\n')).not.toContain(code);

    const stored = await storedSecrets();
    const cache = stored[tokenCacheSecretName(shared)];
    expect(cache?.tags).toMatchObject({ mailbox: shared });
    expect(refreshTokensIn(cache?.value)).toHaveLength(1);
    expect(Buffer.byteLength(cache?.value ?? '')).toBeLessThan(25 * 1024);
    expect(Object.keys(stored).filter((name) => name.startsWith('oauth-pending-'))).toEqual([]);

    const sent = await send(shared);
    expect(sent.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe(shared);
    expect(harness.identity.issuedAccessTokens.get(received?.accessToken ?? '')).toMatchObject({
      username: shared,
      clientId: appClientId,
    });
    expect(harness.identity.isValidAccessToken(received?.accessToken ?? '', { username: shared })).toBe(true);
  });

  it('still applies the caller sender allow-list to delegated mailboxes', async () => {
    const refused = await send(shared, alertsKey);
    expect(refused.status).toBe(403);
    expect(refused.body.error?.code).toBe('sender_not_allowed');
  });

  it('refuses a replayed callback and forged or missing states with 400, redeeming nothing', async () => {
    const codeGrants = tokenGrants('authorization_code');
    const before = await storedSecrets();
    const replayed = await fetch(successfulCallback.callbackUrl, {
      headers: { cookie: successfulCallback.bindingCookie },
    });
    expect(replayed.status).toBe(400);
    expect(await replayed.text()).toContain('already used');

    const forged = await fetch(`${host.origin}/api/oauth/callback?state=forged-state&code=stolen-code`);
    expect(forged.status).toBe(400);
    const missing = await fetch(`${host.origin}/api/oauth/callback?code=stolen-code`);
    expect(missing.status).toBe(400);
    expect(await missing.text()).toContain('no state parameter');

    expect(tokenGrants('authorization_code')).toBe(codeGrants);
    expect(await storedSecrets()).toEqual(before);
  });

  it('refuses a state finished in another browser, without consuming it', async () => {
    const started = await fetch(`${host.origin}/api/oauth/start?mailbox=${reports}`, { redirect: 'manual' });
    expect(started.status).toBe(302);
    const state = new URL(started.headers.get('location') ?? '').searchParams.get('state') ?? '';
    const elsewhere = await fetch(`${host.origin}/api/oauth/callback?state=${state}&code=stolen-code`);
    expect(elsewhere.status).toBe(400);
    expect(await elsewhere.text()).toContain('different browser');
  });

  it('answers a different account with a 409 page naming both, and stores nothing', async () => {
    const before = await storedSecrets();
    const outcome = await connectInBrowser(reports, intruder);
    expect(outcome.status).toBe(409);
    expect(outcome.text).toContain(`You signed in as ${intruder}, but this link connects ${reports}.`);
    expect(outcome.text).toContain('Nothing was stored');
    const after = await storedSecrets();
    const withoutPending = (secrets: Record<string, StoredSecret>) =>
      Object.fromEntries(Object.entries(secrets).filter(([name]) => !name.startsWith('oauth-pending-')));
    expect(withoutPending(after)).toEqual(withoutPending(before));
    expect(after[tokenCacheSecretName(reports)]).toBeUndefined();
  });

  it('refuses a sign-in whose ID token is of another tenant with a 409 page naming both, and stores nothing', async () => {
    const otherTenant = '0f0e0d0c-0b0a-4909-8807-060504030201';
    harness.identity.registerUser({ username: unconnected, idTokenTenantId: otherTenant });
    try {
      const before = await storedSecrets();
      const outcome = await connectInBrowser(unconnected, unconnected);
      expect(outcome.status).toBe(409);
      expect(outcome.heading).toBe('Signed in to a different tenant');
      expect(outcome.text).toContain(
        `You signed in with an account of tenant ${otherTenant}, but the relay works for tenant ${harness.identity.tenantId}`,
      );
      expect(outcome.text).toContain('Nothing was stored');
      expect(outcome.text).not.toMatch(/code=|eyJ/);
      const after = await storedSecrets();
      const withoutPending = (secrets: Record<string, StoredSecret>) =>
        Object.fromEntries(Object.entries(secrets).filter(([name]) => !name.startsWith('oauth-pending-')));
      expect(withoutPending(after)).toEqual(withoutPending(before));
      expect(after[tokenCacheSecretName(unconnected)]).toBeUndefined();
    } finally {
      harness.identity.registerUser({ username: unconnected });
    }
  });

  it('shows a readable page when the user declines consent (AADSTS65004)', async () => {
    const outcome = await connectInBrowser(reports, reports, true);
    expect(outcome.status).toBe(400);
    expect(outcome.heading).toBe('Microsoft sign-in did not complete');
    expect(outcome.text).toContain('AADSTS65004');
    expect(outcome.text).toContain('accept the SMTP.Send permission');
  });

  it('refuses to start for a mailbox that is not delegated, naming the setting', async () => {
    const response = await fetch(`${host.origin}/api/oauth/start?mailbox=alerts@contoso.com`, {
      redirect: 'manual',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error: { code: 'mailbox_not_delegated', remedy: expect.stringContaining('RELAY_MAILBOXES') },
    });
  });

  it('asks for a sign-in, naming the start URL, when a delegated mailbox was never connected', async () => {
    const refused = await send(unconnected);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: 'mailbox_not_connected',
      remedy: expect.stringContaining(`${host.origin}/api/oauth/start?mailbox=unconnected%40contoso.com`),
    });
  });
});

describe('tokenRefresh timer and /api/status', () => {
  beforeAll(async () => {
    const outcome = await connectInBrowser(reports, reports);
    expect(outcome.status).toBe(200);
    // A client secret that expires in 20 days: inside the 30-day warning.
    await harness.secrets.setSecret(
      harness.config.identity.clientSecretName,
      'app-client-secret-value-never-logged',
      {
        expiresOn: new Date(Date.now() + 20.5 * 86_400_000),
      },
    );
  });

  it('rotates and stores the refresh token of every delegated mailbox, also when two instances fire at once', async () => {
    const before = await storedSecrets();
    const refreshes = tokenGrants('refresh_token');
    const lines = await runTimer();
    expect(tokenGrants('refresh_token')).toBe(refreshes + 2);
    const after = await storedSecrets();
    for (const mailbox of [shared, reports]) {
      const previous = refreshTokensIn(before[tokenCacheSecretName(mailbox)]?.value);
      const current = refreshTokensIn(after[tokenCacheSecretName(mailbox)]?.value);
      expect(current).toHaveLength(1);
      expect(current).not.toEqual(previous);
      expect(await harness.runtime.mailboxHealth.read(mailbox)).toMatchObject({ needsConsent: false });
    }
    expect(lines.join('\n')).toMatch(/client credential: The app's secret expires in 20 days/);
    expect(lines.join('\n')).toMatch(/unconnected@contoso\.com: mailbox_not_connected; needs a new sign-in/);

    // Two Function instances, each with its own memory and its own Key Vault client, fire at the same moment.
    const vault = await startKeyVaultPeer();
    try {
      const seed = await openVaultStore(vault);
      for (const [name, secret] of Object.entries(await storedSecrets()))
        await seed.setSecret(name, secret.value, { tags: secret.tags });
      const instance = async () =>
        createRuntime(
          harness.config,
          createCachedSecretStore(await openVaultStore(vault), { ttlSeconds: 300 }),
        );
      const [first, second] = await Promise.all([instance(), instance()]);
      const outcomes = await Promise.all([first.maintenance.refreshAll(), second.maintenance.refreshAll()]);
      for (const report of outcomes)
        expect(report.mailboxes.filter((outcome) => outcome.mailbox !== unconnected)).toEqual([
          { mailbox: shared, ok: true },
          { mailbox: reports, ok: true },
        ]);
      // Both wrote complete new versions; whichever is current holds a refresh token that works.
      expect(vault.secretVersions(tokenCacheSecretName(shared)).length).toBe(3);
      const third = await instance();
      expect((await third.maintenance.refreshAll()).mailboxes.filter((outcome) => outcome.ok)).toHaveLength(
        2,
      );
      for (const runtime of [first, second, third]) runtime.close();
    } finally {
      await vault.close();
    }
    harness.smtp.reset();
    expect((await send(reports)).status).toBe(200);
  });

  it('marks a mailbox whose grant expired (AADSTS700082) as needing consent, while the others still refresh', async () => {
    harness.identity.revokeRefreshTokensFor(reports);
    const storedBefore = (await storedSecrets())[tokenCacheSecretName(reports)];
    const lines = await runTimer();
    expect(lines.join('\n')).toContain(
      'token refresh reports@contoso.com: refresh_token_expired (AADSTS700082); needs a new sign-in',
    );
    expect(lines.join('\n')).toContain('token refresh shared@contoso.com: ok');
    // The last good sign-in stays in the store: nothing was written over it.
    expect((await storedSecrets())[tokenCacheSecretName(reports)]).toEqual(storedBefore);

    const report = await status();
    const byAddress = new Map(report.mailboxes.map((mailbox) => [mailbox.address, mailbox]));
    expect(byAddress.get(shared)).toMatchObject({ mode: 'delegated', health: 'healthy' });
    expect(byAddress.get(shared)?.lastError).toBeUndefined();
    expect(byAddress.get(reports)).toMatchObject({
      mode: 'delegated',
      health: 'needs_consent',
      lastError: { code: 'refresh_token_expired', aadsts: 'AADSTS700082' },
      consentUrl: `${host.origin}/api/oauth/start?mailbox=reports%40contoso.com`,
      remedy: expect.stringContaining(`${host.origin}/api/oauth/start?mailbox=reports%40contoso.com`),
    });
    expect(byAddress.get(unconnected)).toMatchObject({ health: 'not_connected' });
    expect(byAddress.get('alerts@contoso.com')).toMatchObject({ mode: 'app', health: 'app-only' });
    expect(report.credential).toMatchObject({ type: 'secret', daysLeft: 20 });
    expect(report.credential.warning).toContain('expires in 20 days');
    const text = JSON.stringify(report);
    const stored = await storedSecrets();
    for (const secret of Object.values(stored)) {
      for (const refreshToken of refreshTokensIn(secret.value.startsWith('{') ? secret.value : '{}'))
        expect(text).not.toContain(refreshToken);
    }
    expect(text).not.toContain('app-client-secret-value');
    const samplePath = process.env.RELAY_STATUS_SAMPLE_PATH;
    if (samplePath !== undefined) {
      const cacheBytes = Object.fromEntries(
        [shared, reports].map((mailbox) => [
          mailbox,
          Buffer.byteLength(stored[tokenCacheSecretName(mailbox)]?.value ?? ''),
        ]),
      );
      await writeFile(samplePath, JSON.stringify({ report, cacheBytes }, null, 2));
    }
  });

  it('lets a fresh process send from a delegated mailbox with only what the store holds', async () => {
    // Drop the stored access token so the new process must use the persisted refresh token.
    const file = JSON.parse(await readFile(harness.secretsPath, 'utf8')) as {
      secrets: Record<string, StoredSecret>;
    };
    const entry = file.secrets[tokenCacheSecretName(shared)];
    if (entry === undefined) throw new Error('shared mailbox has no stored token cache');
    entry.value = JSON.stringify({ ...(JSON.parse(entry.value) as object), AccessToken: {} });
    await writeFile(harness.secretsPath, JSON.stringify(file));
    const directory = await mkdtemp(join(tmpdir(), 'relay-restart-'));
    const caPath = join(directory, 'ca.pem');
    await writeFile(caPath, (await sharedTestCertificate()).cert);
    harness.smtp.reset();
    const refreshes = tokenGrants('refresh_token');

    const child = spawn(process.execPath, ['test/support/sendFromStore.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: caPath,
        RELAY_TEST_SETTINGS: JSON.stringify({
          RELAY_TENANT_ID: harness.identity.tenantId,
          RELAY_CLIENT_ID: appClientId,
          RELAY_AUTHORITY_HOST: harness.identity.authorityHost,
          RELAY_SMTP_HOST: 'localhost',
          RELAY_SMTP_PORT: String(harness.smtp.port),
          RELAY_LOCAL_SECRETS_PATH: harness.secretsPath,
          RELAY_MAILBOXES: JSON.stringify(mailboxes),
          RELAY_PUBLIC_BASE_URL: host.origin,
          RELAY_STATE_STORE: 'memory',
        }),
        RELAY_TEST_MESSAGE: JSON.stringify({
          from: shared,
          to: 'ops@contoso.com',
          subject: 'After restart',
          text: 'ok',
        }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exitCode = await new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    await rm(directory, { recursive: true, force: true });

    expect(exitCode, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({
      ok: true,
      result: { sender: shared, accepted: ['ops@contoso.com'] },
    });
    expect(tokenGrants('refresh_token')).toBe(refreshes + 1);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe(shared);
    expect(
      harness.identity.isValidAccessToken(received?.accessToken ?? '', {
        username: shared,
        scope: delegatedScope,
      }),
    ).toBe(true);
  });
});
