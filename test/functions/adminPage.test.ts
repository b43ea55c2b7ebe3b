import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';
import { type Browser, type BrowserContext, chromium, type Page, type Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
import { createQueueListener } from '../../devhost/queueListener.ts';
// Imported for their registrations: the development host serves them to Chromium and to fetch.
import '../../functions/admin.ts';
import '../../functions/checkMailbox.ts';
import '../../functions/disconnectMailbox.ts';
import '../../functions/oauthCallback.ts';
import '../../functions/oauthStart.ts';
import '../../functions/retryPoisoned.ts';
import '../../functions/send.ts';
import {
  type FunctionApp,
  functionApp,
  type HostedHttpFunction,
  triggerHandler,
} from '../../functions/register.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import type { RouteName } from '../../shared/api/routes.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { emptyTokenCache, tokenCacheSecretName } from '../../shared/tokens/tokenCachePlugin.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import { connectMailbox } from '../support/connectMailbox.ts';
import { openKeyVaultStore } from '../support/keyVaultStore.ts';
import {
  appClientSecret,
  delegatedScope,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * The admin page end to end, as an operator uses it: the function app served over real HTTP by the
 * development host, the page in Debian's Chromium, the relay on the loopback peers with its state and
 * queue in Azurite and its secrets in a Key Vault peer that, like the real vault, never lets a deleted name
 * be set again. The tests are one session and run in order: what the page says, Connect, Disconnect,
 * Test, Reconnect, Retry of a poisoned message.
 */
const adminKey = 'test-admin-key';
const connectedFromPage = 'shared@contoso.com';
const connectedBefore = 'reports@contoso.com';
const appMailbox = 'alerts@contoso.com';
const opsKey = 'caller-key-ops-0123456789';
const alertsKey = 'caller-key-alerts-0123456789';
const artifacts = fileURLToPath(new URL('../../.artifacts/', import.meta.url));
const poisonedSubject = 'Nightly report (poisoned)';
const waitingSubject = 'Nightly report (waiting)';

/** What the development host handed a function: the request as the Functions host would pass it on. */
interface SeenRequest {
  route: RouteName;
  method: string;
  path: string;
  query: URLSearchParams;
  functionsKey: string | null;
}

let azurite: Azurite;
let harness: RelayHarness;
let vault: KeyVaultPeer;
let runtime: Runtime;
let host: DevHost;
let browser: Browser;
let session: BrowserContext;
let adminPage: Page;
let poisonedId: string;
let waitingId: string;
const seen: SeenRequest[] = [];
const hostLog: string[] = [];
const runtimeLog: string[] = [];
/** CSP violations, console errors and script errors on any page of the session. */
const problems: string[] = [];
/** Every answer a person or caller saw (pages as served, JSON bodies), to check none holds a secret. */
const shown: string[] = [];
/** The authorization codes Microsoft sent back on the callback URLs. */
const authorizationCodes: string[] = [];

const adminUrl = () => `${host.origin}/api/admin?code=${adminKey}`;

/** The function app as the development host serves it, each function recording what it received. */
function recordingApp(app: FunctionApp): FunctionApp {
  const http = new Map<RouteName, HostedHttpFunction>();
  for (const [name, hosted] of app.http) {
    http.set(name, async (request, source, context) => {
      const url = new URL(request.url);
      seen.push({
        route: name,
        method: request.method,
        path: url.pathname,
        query: url.searchParams,
        functionsKey: request.headers.get('x-functions-key'),
      });
      return hosted(request, source, context);
    });
  }
  return { ...app, http };
}

const openVaultStore = () => openKeyVaultStore(vault);

async function newWatchedPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
  const page = await session.newPage();
  await page.setViewportSize(viewport);
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content Security Policy/i.test(message.text()))
      problems.push(`console on ${page.url()}: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`script on ${page.url()}: ${error.message}`));
  return page;
}

/** Loads the admin page (again) and keeps what the server sent. */
async function loadAdminPage(page: Page): Promise<Response> {
  const response = await page.goto(adminUrl());
  if (response === null) throw new Error('the admin page did not load');
  expect(response.status()).toBe(200);
  shown.push(await response.text());
  return response;
}

function card(page: Page, address: string) {
  return page.locator(`li[data-mailbox="${address}"]`);
}

async function healthOf(page: Page, address: string): Promise<string> {
  return card(page, address).locator('dt:text-is("Health") + dd').innerText();
}

/** The text of a card's live region once it says `start` (Playwright waits on DOM changes, no sleep). */
async function resultOf(page: Page, selector: string, start: string): Promise<string> {
  const region = page.locator(`${selector} .result`).filter({ hasText: start });
  await region.waitFor();
  return region.innerText();
}

function frameHeaders(response: Response) {
  const headers = response.headers();
  return {
    policyDirectives: (headers['content-security-policy'] ?? '').split(';').map((part) => part.trim()),
    xFrameOptions: headers['x-frame-options'],
  };
}

interface SignInOutcome {
  status: number;
  heading: string;
  text: string;
  response: Response;
}

/**
 * After a click on Connect or Reconnect: signs in as `mailbox` on the identity peer's Microsoft sign-in
 * page and reads the page the relay's callback shows.
 */
async function signInAs(page: Page, mailbox: string): Promise<SignInOutcome> {
  await page.waitForURL((url) => url.origin === harness.identity.authorityHost);
  expect(await page.title()).toBe('Sign in to your account');
  const callback = page.waitForResponse((response) =>
    response.url().startsWith(`${host.origin}/api/oauth/callback`),
  );
  await page.fill('#username', mailbox);
  await page.click('#sign-in');
  const response = await callback;
  await page.waitForLoadState('load');
  authorizationCodes.push(new URL(response.url()).searchParams.get('code') ?? '');
  shown.push(await response.text());
  return {
    status: response.status(),
    heading: await page.locator('h1').innerText(),
    text: await page.locator('body').innerText(),
    response,
  };
}

async function post(path: string, body: unknown, headers: Record<string, string>) {
  const response = await fetch(`${host.origin}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  shown.push(text);
  return { status: response.status, body: JSON.parse(text) as Record<string, Record<string, unknown>> };
}

function sendAs(from: string, subject: string) {
  return post('/api/send', { from, to: 'ops@contoso.com', subject, text: 'ok' }, { 'x-relay-key': opsKey });
}

/** Queues a message from the app mailbox (Prefer: respond-async) and returns its id. */
async function queueMessage(subject: string): Promise<string> {
  const accepted = await post(
    '/api/send',
    { from: appMailbox, to: 'ops@contoso.com', subject, text: 'ok' },
    { 'x-relay-key': alertsKey, prefer: 'respond-async' },
  );
  expect(accepted.status).toBe(202);
  return accepted.body.id as unknown as string;
}

/** Runs the real queue trigger (the development host's listener, which poisons as Azure does) until each message settled. */
async function drain(ids: string[]): Promise<void> {
  const listener = createQueueListener({
    functionName: 'sendQueued',
    queue: runtime.storage.sendQueue,
    poisonQueue: runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, runtime),
    settings: { visibilityTimeoutSeconds: 0, maxPollingIntervalSeconds: 0.05 },
  });
  await listener.runUntil(async () => {
    const states = await Promise.all(
      ids.map(async (id) => (await runtime.sendQueue.statuses.get('alerts-app', id))?.status.state),
    );
    return states.every((state) => state === 'sent' || state === 'failed');
  }, 30_000);
}

async function deliveredSubjects(): Promise<(string | undefined)[]> {
  return Promise.all(
    harness.smtp.messages.map(async (received) => (await simpleParser(received.raw)).subject),
  );
}

function refreshTokensIn(cacheValue: string | undefined): string[] {
  const cache = JSON.parse(cacheValue ?? '{}') as { RefreshToken?: Record<string, { secret: string }> };
  return Object.values(cache.RefreshToken ?? {}).map((token) => token.secret);
}

function requestsTo(route: RouteName): SeenRequest[] {
  return seen.filter((request) => request.route === route);
}

beforeAll(async () => {
  azurite = await startAzurite();
  // The host starts first: the relay's configuration needs its origin (RELAY_PUBLIC_BASE_URL) for consent links.
  host = await startDevHost({
    functionApp: recordingApp(functionApp),
    runtime: async () => runtime,
    port: 0,
    triggers: false,
    log: (line) => hostLog.push(line),
  });
  harness = await startRelayHarness({
    storeClientSecret: false,
    settings: {
      RELAY_PUBLIC_BASE_URL: host.origin,
      RELAY_MAILBOXES: JSON.stringify([
        { address: connectedFromPage, mode: 'delegated' },
        { address: connectedBefore, mode: 'delegated' },
        { address: appMailbox, mode: 'app' },
      ]),
      RELAY_STATE_STORE: 'storage',
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
    },
    callers: [
      { name: 'ops-app', apiKey: opsKey, senders: [connectedFromPage, connectedBefore] },
      { name: 'alerts-app', apiKey: alertsKey, senders: [appMailbox] },
    ],
  });
  vault = await startKeyVaultPeer();
  const secrets = createCachedSecretStore(await openVaultStore(), {
    ttlSeconds: harness.config.secrets.cacheSeconds,
  });
  // A client secret with 45 days left: outside the 30-day warning, so the page only counts the days.
  await secrets.setSecret(harness.config.identity.clientSecretName, appClientSecret, {
    expiresOn: new Date(Date.now() + 45.5 * 86_400_000),
  });
  runtime = createRuntime(harness.config, secrets, { log: (line) => runtimeLog.push(line) });
  harness.identity.registerUser({ username: connectedFromPage });
  await connectMailbox({ ...harness, runtime }, connectedBefore);

  // A message Exchange refuses for good at MAIL FROM is poisoned at once; another one waits on the queue.
  harness.smtp.replyNext({
    stage: 'mail',
    code: 550,
    message: '5.7.60 SMTP; Client does not have permissions to send as this sender',
  });
  poisonedId = await queueMessage(poisonedSubject);
  await drain([poisonedId]);
  waitingId = await queueMessage(waitingSubject);
  await runtime.transports.closeAll();
  await harness.smtp.waitForNoOpenConnections();
  harness.smtp.reset();

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
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
  // The identity peer's certificate is the shared self-signed test certificate: trusted by this browser only.
  session = await browser.newContext({ ignoreHTTPSErrors: true });
  // Injected by the browser itself, so no page's CSP applies to this listener.
  await session.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', (event) => {
      console.error('Content Security Policy violation: ' + event.violatedDirective + ' ' + event.blockedURI);
    });`,
  });
  adminPage = await newWatchedPage();
  await mkdir(artifacts, { recursive: true });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await host?.close();
  await runtime?.close();
  await harness?.close();
  await vault?.close();
  await azurite?.stop();
});

describe('the admin page over HTTP in Chromium', () => {
  it('says each mailbox health in words, the credential days left and the real queue counts', async () => {
    const response = await loadAdminPage(adminPage);
    const { policyDirectives, xFrameOptions } = frameHeaders(response);
    expect(policyDirectives).toContain("frame-ancestors 'none'");
    expect(xFrameOptions).toBe('DENY');
    // The host authenticates ?code=; the page's script reads it from its own address, the server never writes it.
    expect(shown.at(-1)).not.toContain(adminKey);

    expect(await healthOf(adminPage, connectedFromPage)).toMatch(/^Not connected\b/);
    expect(await healthOf(adminPage, connectedBefore)).toMatch(/^Healthy\b/);
    expect(await healthOf(adminPage, appMailbox)).toMatch(/^App-only \(no sign-in needed\)/);
    expect(
      await adminPage.locator(`li[data-mailbox="${connectedFromPage}"][data-health="not_connected"]`).count(),
    ).toBe(1);
    expect(
      await adminPage.locator(`li[data-mailbox="${connectedBefore}"][data-health="healthy"]`).count(),
    ).toBe(1);
    expect(await adminPage.locator(`li[data-mailbox="${appMailbox}"][data-health="app-only"]`).count()).toBe(
      1,
    );
    expect(await card(adminPage, connectedFromPage).innerText()).toContain(
      `What to do\nOpen ${host.origin}/api/oauth/start?mailbox=shared%40contoso.com`,
    );

    const credential = await adminPage.locator('section[aria-labelledby="credential-title"]').innerText();
    const expiresOn = new Date(Date.now() + 45.5 * 86_400_000).toISOString().slice(0, 10);
    expect(credential).toContain('Type\nClient secret');
    expect(credential).toContain(`Days left\n45 days left (expires ${expiresOn})`);

    const queue = await adminPage.locator('section[aria-labelledby="queue-title"]').innerText();
    expect(queue).toContain('Queued\n1 message');
    expect(queue).toContain('Failed\n1 message');
    expect(queue).toContain('Poisoned\n1 message');
    const poisoned = await adminPage.locator(`li[data-poisoned="${poisonedId}"]`).innerText();
    expect(poisoned).toContain('Caller\nalerts-app');
    expect(poisoned).toContain(`Sender\n${appMailbox}`);
    expect(poisoned).toMatch(/Reason\nsend_as_denied: /);
    expect(problems).toEqual([]);
  });

  it('connects a mailbox from its Connect link through the Microsoft sign-in page, then shows it Healthy', async () => {
    await adminPage.getByRole('link', { name: `Connect ${connectedFromPage}`, exact: true }).click();
    const outcome = await signInAs(adminPage, connectedFromPage);
    expect(outcome.status).toBe(200);
    expect(outcome.heading).toBe('Mailbox connected');
    expect(outcome.text).toContain(`${connectedFromPage} is connected to the mail relay`);
    const { policyDirectives, xFrameOptions } = frameHeaders(outcome.response);
    expect(policyDirectives).toContain("frame-ancestors 'none'");
    expect(xFrameOptions).toBe('DENY');
    // The link carried the admin key as ?code=, which the Functions host checks on /api/oauth/start.
    const [start] = requestsTo('oauthStart');
    expect(start?.query.get('mailbox')).toBe(connectedFromPage);
    expect(start?.query.get('code')).toBe(adminKey);

    await loadAdminPage(adminPage);
    expect(
      await adminPage.locator(`li[data-mailbox="${connectedFromPage}"][data-health="healthy"]`).count(),
    ).toBe(1);
    expect(await healthOf(adminPage, connectedFromPage)).toMatch(/^Healthy\b/);
    expect(refreshTokensIn(vault.secretValue(tokenCacheSecretName(connectedFromPage)))).toHaveLength(1);
    expect(problems).toEqual([]);
  });

  it('disconnects after a confirmation, then refuses sends as the mailbox with its consent URL and keeps the secret', async () => {
    const cacheName = tokenCacheSecretName(connectedFromPage);
    const versionsBefore = vault.secretVersions(cacheName).length;
    await adminPage.getByRole('button', { name: `Disconnect ${connectedFromPage}`, exact: true }).click();
    expect(requestsTo('disconnectMailbox')).toEqual([]);
    const reloaded = adminPage.waitForEvent('load');
    await adminPage.getByRole('button', { name: `Confirm disconnect ${connectedFromPage}` }).click();
    await reloaded;

    await adminPage.locator('#notice', { hasText: `Disconnected ${connectedFromPage}.` }).waitFor();
    expect(await healthOf(adminPage, connectedFromPage)).toMatch(/^Disconnected\b/);
    expect(
      await adminPage.locator(`li[data-mailbox="${connectedFromPage}"][data-health="disconnected"]`).count(),
    ).toBe(1);
    expect(await adminPage.getByRole('link', { name: `Reconnect ${connectedFromPage}` }).count()).toBe(1);
    expect(await adminPage.getByRole('button', { name: `Disconnect ${connectedFromPage}` }).count()).toBe(0);
    expect(await card(adminPage, connectedFromPage).innerText()).toContain(
      `What to do\nOpen ${host.origin}/api/oauth/start?mailbox=shared%40contoso.com`,
    );
    expect(await adminPage.locator('section[aria-labelledby="summary-title"]').innerText()).toContain(
      `${connectedFromPage}: Disconnected`,
    );
    expect(await healthOf(adminPage, connectedBefore)).toMatch(/^Healthy\b/);

    // The script sent the key from ?code= as x-functions-key, never in the URL.
    const disconnects = requestsTo('disconnectMailbox');
    expect(disconnects.map((request) => [request.method, request.path, request.functionsKey])).toEqual([
      ['DELETE', '/api/mailboxes/shared%40contoso.com/connection', adminKey],
    ]);
    expect(disconnects[0]?.query.has('code')).toBe(false);

    const refused = await sendAs(connectedFromPage, 'After the disconnect');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: 'mailbox_not_connected',
      remedy: expect.stringContaining(`${host.origin}/api/oauth/start?mailbox=shared%40contoso.com`),
    });
    expect(harness.smtp.messages).toEqual([]);

    // A new, empty version of the token cache; the name is never deleted (Key Vault would keep it from a reconnect).
    const versions = vault.secretVersions(cacheName);
    expect(versions).toHaveLength(versionsBefore + 1);
    expect(versions.at(-1)?.value).toBe(emptyTokenCache);
    expect(vault.secretValue(cacheName)).toBe(emptyTokenCache);
    expect(vault.countOperations('delete')).toBe(0);
    expect(problems).toEqual([]);
  });

  it('tells the outcome of a connection test in words next to the mailbox', async () => {
    await adminPage.getByRole('button', { name: `Test ${connectedFromPage}`, exact: true }).click();
    const failed = await resultOf(adminPage, `li[data-mailbox="${connectedFromPage}"]`, 'Test failed');
    expect(failed).toBe(
      `Test failed for shared@contoso.com at the token step: The delegated mailbox shared@contoso.com was disconnected by an administrator: the relay no longer signs in as it (mailbox_not_connected). What to do: Open ${host.origin}/api/oauth/start?mailbox=shared%40contoso.com (with the function key) and sign in as shared@contoso.com.`,
    );

    await adminPage.getByRole('button', { name: `Test ${connectedBefore}`, exact: true }).click();
    expect(await resultOf(adminPage, `li[data-mailbox="${connectedBefore}"]`, 'Test passed')).toBe(
      'Test passed for reports@contoso.com: token, TCP connection, SMTP session slot, STARTTLS, XOAUTH2 sign-in worked.',
    );

    const tests = requestsTo('checkMailbox');
    expect(tests.map((request) => [request.method, request.path, request.functionsKey])).toEqual([
      ['POST', '/api/mailboxes/shared%40contoso.com/test', adminKey],
      ['POST', '/api/mailboxes/reports%40contoso.com/test', adminKey],
    ]);
    // A test without sendTo signs in and sends nothing.
    expect(harness.smtp.messages).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('reconnects through the sign-in page, shows Healthy again, and sends as the mailbox', async () => {
    const cacheName = tokenCacheSecretName(connectedFromPage);
    await adminPage.getByRole('link', { name: `Reconnect ${connectedFromPage}`, exact: true }).click();
    const outcome = await signInAs(adminPage, connectedFromPage);
    expect(outcome.status).toBe(200);
    expect(outcome.heading).toBe('Mailbox connected');
    expect(requestsTo('oauthStart').at(-1)?.query.get('code')).toBe(adminKey);

    await loadAdminPage(adminPage);
    expect(
      await adminPage.locator(`li[data-mailbox="${connectedFromPage}"][data-health="healthy"]`).count(),
    ).toBe(1);
    expect(await healthOf(adminPage, connectedFromPage)).toMatch(/^Healthy\b/);
    expect(refreshTokensIn(vault.secretValue(cacheName))).toHaveLength(1);
    expect(vault.countOperations('delete')).toBe(0);

    const sent = await sendAs(connectedFromPage, 'After the reconnect');
    expect(sent.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe(connectedFromPage);
    expect(
      harness.identity.isValidAccessToken(received?.accessToken ?? '', {
        username: connectedFromPage,
        scope: delegatedScope,
      }),
    ).toBe(true);
    expect(await deliveredSubjects()).toEqual(['After the reconnect']);

    await adminPage.screenshot({ path: `${artifacts}admin-page.png`, fullPage: true });
    const phone = await newWatchedPage({ width: 375, height: 800 });
    await loadAdminPage(phone);
    expect(await phone.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await phone.screenshot({ path: `${artifacts}admin-page-phone.png`, fullPage: true });
    await phone.close();
    expect(problems).toEqual([]);
  });

  it('retries the poisoned message from the page, and the queue then sends it once', async () => {
    const reloaded = adminPage.waitForEvent('load');
    await adminPage.getByRole('button', { name: `Retry message ${poisonedId} from ${appMailbox}` }).click();
    await reloaded;
    await adminPage.locator('#notice', { hasText: 'queued again' }).waitFor();
    expect(await adminPage.locator('#notice').innerText()).toBe(
      `Message ${poisonedId} from ${appMailbox} is queued again.`,
    );
    const queue = await adminPage.locator('section[aria-labelledby="queue-title"]').innerText();
    expect(queue).toContain('Queued\n2 messages');
    expect(queue).toContain('Failed\n0 messages');
    expect(queue).toContain('Poisoned\n0 messages');
    const retries = requestsTo('retryPoisoned');
    expect(retries.map((request) => [request.method, request.path, request.functionsKey])).toEqual([
      ['POST', `/api/admin/poisoned/${poisonedId}/retry`, adminKey],
    ]);

    harness.smtp.reset();
    await drain([poisonedId, waitingId]);
    expect((await deliveredSubjects()).sort()).toEqual([poisonedSubject, waitingSubject].sort());
    expect(problems).toEqual([]);
  });

  it('never showed or logged a secret, token, authorization code or key', async () => {
    const vaultValues = [connectedFromPage, connectedBefore].flatMap((mailbox) =>
      vault.secretVersions(tokenCacheSecretName(mailbox)).map((version) => version.value),
    );
    const refreshTokens = vaultValues.flatMap((value) => refreshTokensIn(value));
    const accessTokens = [...harness.identity.issuedAccessTokens.keys()];
    expect(refreshTokens.length).toBeGreaterThanOrEqual(3);
    expect(accessTokens.length).toBeGreaterThan(0);
    expect(authorizationCodes).toHaveLength(2);
    const secrets = [
      appClientSecret,
      opsKey,
      alertsKey,
      ...refreshTokens,
      ...accessTokens,
      ...authorizationCodes,
    ];
    const logs = [...hostLog, ...runtimeLog].join('\n');
    const answers = shown.join('\n');
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(10);
      expect(logs).not.toContain(secret);
      expect(answers).not.toContain(secret);
    }
    expect(logs).not.toContain(adminKey);
    expect(answers).not.toContain(adminKey);
    expect(hostLog.join('\n')).toContain(`oauth callback -> connected (${connectedFromPage})`);
  });
});
