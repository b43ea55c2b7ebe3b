import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type AdminMailbox, type AdminPageView, renderAdminPage } from '../../../shared/admin/adminPage.ts';

const adminKey = 'admin-key-0123456789abcdef';
const artifacts = fileURLToPath(new URL('../../../.artifacts/', import.meta.url));

function mailboxPath(address: string, action: 'connection' | 'test'): string {
  return `/api/mailboxes/${encodeURIComponent(address)}/${action}`;
}

function delegated(address: string, fields: Partial<AdminMailbox>): AdminMailbox {
  return {
    address,
    mode: 'delegated',
    health: 'healthy',
    connectUrl: `/api/oauth/start?mailbox=${encodeURIComponent(address)}`,
    testUrl: mailboxPath(address, 'test'),
    ...fields,
  };
}

/** One mailbox in every health state, a credential about to expire, two poisoned messages. */
function sampleView(): AdminPageView {
  return {
    generatedAt: '2026-11-24T12:00:00.000Z',
    mailboxes: [
      delegated('ops@contoso.com', {
        connectedAt: '2026-11-01T08:00:00.000Z',
        lastRefreshAt: '2026-11-24T09:00:00.000Z',
        lastSuccessAt: '2026-11-24T09:00:00.000Z',
        disconnectUrl: mailboxPath('ops@contoso.com', 'connection'),
      }),
      {
        address: 'alerts@contoso.com',
        mode: 'app',
        health: 'app-only',
        testUrl: mailboxPath('alerts@contoso.com', 'test'),
      },
      delegated('new@contoso.com', {
        health: 'not_connected',
        remedy: 'Connect it and sign in as new@contoso.com.',
      }),
      delegated('former@contoso.com', {
        health: 'disconnected',
        remedy: 'Reconnect it and sign in as former@contoso.com to send as it again.',
      }),
      delegated('reports@contoso.com', {
        health: 'needs_consent',
        connectedAt: '2026-08-01T08:00:00.000Z',
        lastRefreshAt: '2026-11-24T06:00:00.000Z',
        lastSuccessAt: '2026-11-20T06:00:00.000Z',
        lastError: {
          code: 'refresh_token_expired',
          message: 'AADSTS70043: the sign-in expired under a Conditional Access sign-in frequency policy.',
          at: '2026-11-24T06:00:00.000Z',
        },
        remedy: 'Reconnect it and sign in as reports@contoso.com.',
        disconnectUrl: mailboxPath('reports@contoso.com', 'connection'),
      }),
      delegated('billing@contoso.com', {
        health: 'failing',
        connectedAt: '2026-10-01T08:00:00.000Z',
        lastRefreshAt: '2026-11-24T11:00:00.000Z',
        lastError: {
          code: 'smtp_auth_failed',
          message: '535 5.7.3 Authentication unsuccessful <b>[AM0PR01]</b>',
          at: '2026-11-24T11:00:00.000Z',
        },
        remedy: 'Turn on Authenticated SMTP for billing@contoso.com in the Microsoft 365 admin center.',
        disconnectUrl: mailboxPath('billing@contoso.com', 'connection'),
      }),
      delegated('archive@contoso.com', { health: 'unknown' }),
    ],
    credential: {
      type: 'secret',
      secretName: 'relay-client-secret',
      expiresOn: '2026-12-06T00:00:00.000Z',
      daysLeft: 12,
      warning:
        "The app's secret expires in 12 days: create a new one and store it under relay-client-secret.",
    },
    queue: {
      queued: 3,
      failed: 1,
      poisonCount: 2,
      poisoned: [
        {
          id: 'q-1',
          callerName: 'ops-app',
          sender: 'ops@contoso.com',
          reason: {
            code: 'send_as_denied',
            message: 'ops@contoso.com may not send as sales@contoso.com.',
            remedy: 'Grant Send As on sales@contoso.com to ops@contoso.com.',
          },
          poisonedAt: '2026-11-23T12:00:00.000Z',
          retryUrl: '/api/queue/poison/q-1/retry',
        },
        {
          id: 'q-2',
          callerName: 'billing-app',
          sender: 'billing@contoso.com',
          reason: { code: 'smtp_auth_failed', message: 'Authentication unsuccessful.' },
          poisonedAt: '2026-11-24T11:30:00.000Z',
          retryUrl: '/api/queue/poison/q-2/retry',
        },
      ],
    },
    alerts: { webhookHost: 'contoso.webhook.office.com', email: 'it@contoso.com' },
  };
}

const passedReport = {
  mailbox: 'ops@contoso.com',
  ok: true,
  relation: 'self',
  signIn: [{ mailbox: 'ops@contoso.com', mode: 'delegated' }],
  warnings: [],
  steps: ['token', 'tcp_connect', 'starttls', 'auth_xoauth2'].map((step) => ({
    step,
    mailbox: 'ops@contoso.com',
    outcome: 'ok',
    durationMs: 3,
  })),
};

const failedReport = {
  mailbox: 'billing@contoso.com',
  ok: false,
  relation: 'self',
  signIn: [{ mailbox: 'billing@contoso.com', mode: 'delegated' }],
  warnings: [],
  steps: [
    { step: 'token', mailbox: 'billing@contoso.com', outcome: 'ok', durationMs: 2 },
    { step: 'tcp_connect', mailbox: 'billing@contoso.com', outcome: 'ok', durationMs: 1 },
    { step: 'starttls', mailbox: 'billing@contoso.com', outcome: 'ok', durationMs: 4 },
    {
      step: 'auth_xoauth2',
      mailbox: 'billing@contoso.com',
      outcome: 'failed',
      durationMs: 5,
      error: {
        code: 'smtp_auth_disabled',
        message: 'Exchange refused XOAUTH2 for billing@contoso.com: SMTP AUTH is disabled for the mailbox.',
        remedy: 'Set-CASMailbox -Identity billing@contoso.com -SmtpClientAuthenticationDisabled $false',
      },
    },
    { step: 'test_message', mailbox: 'billing@contoso.com', outcome: 'skipped', durationMs: 0 },
  ],
};

interface ReceivedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  functionsKey: string | undefined;
  referer: string | undefined;
  body: string;
}

let server: Server;
let origin: string;
let browser: Browser;
let view: AdminPageView;
let received: ReceivedRequest[] = [];

function answerJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  response.end(JSON.stringify(body));
}

/** The relay as the page sees it: the page at /api/admin, and each action URL with a fixed answer. */
async function answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const url = new URL(request.url ?? '/', origin);
  const key = request.headers['x-functions-key'];
  received.push({
    method: request.method ?? '',
    path: url.pathname,
    query: url.searchParams,
    functionsKey: typeof key === 'string' ? key : undefined,
    referer: request.headers.referer,
    body: Buffer.concat(chunks).toString('utf8'),
  });
  const route = `${request.method} ${url.pathname}`;
  if (route === 'GET /api/admin') {
    const page = renderAdminPage(view, { nonce: randomBytes(16).toString('base64') });
    response.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': page.contentSecurityPolicy,
    });
    response.end(page.html);
    return;
  }
  if (route === `DELETE ${mailboxPath('ops@contoso.com', 'connection')}`) {
    // What the relay would now report for it: disconnected, nothing left to disconnect.
    view = {
      ...view,
      mailboxes: view.mailboxes.map((mailbox) =>
        mailbox.address === 'ops@contoso.com'
          ? { ...mailbox, health: 'disconnected', disconnectUrl: undefined, lastSuccessAt: undefined }
          : mailbox,
      ),
    };
    return answerJson(response, 200, { mailbox: 'ops@contoso.com', state: 'disconnected' });
  }
  if (route === `POST ${mailboxPath('ops@contoso.com', 'test')}`)
    return answerJson(response, 200, passedReport);
  if (route === `POST ${mailboxPath('billing@contoso.com', 'test')}`)
    return answerJson(response, 200, failedReport);
  if (route === `POST ${mailboxPath('alerts@contoso.com', 'test')}`) {
    response.writeHead(502, { 'content-type': 'text/html' });
    response.end('<html><body><h1>Bad gateway</h1><script>alert(1)</script></body></html>');
    return;
  }
  if (route === 'POST /api/queue/poison/q-1/retry')
    return answerJson(response, 202, { id: 'q-1', status: 'queued' });
  if (route === 'POST /api/queue/poison/q-2/retry')
    return answerJson(response, 409, {
      error: {
        code: 'poisoned_send_changed',
        message: 'Message q-2 was already queued again by another administrator.',
        remedy: 'Reload the page to see the queue as it is now.',
      },
    });
  if (route === 'GET /api/oauth/start') {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>Sign in</title><h1>Microsoft sign-in would start here</h1>');
    return;
  }
  response.writeHead(404);
  response.end();
}

interface OpenedPage {
  page: Page;
  /** CSP violations and script errors seen while the page was open. */
  problems: string[];
}

async function openAdminPage(viewport = { width: 1280, height: 900 }): Promise<OpenedPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    // Chromium logs every non-2xx answer; the tests ask for some on purpose.
    if (/^Failed to load resource: the server responded with a status of/.test(message.text())) return;
    if (message.type() === 'error' || /Content Security Policy/i.test(message.text()))
      problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`script: ${error.message}`));
  // Injected by the browser itself, so the page's CSP does not apply to this listener.
  await page.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', (event) => {
      console.error('Content Security Policy violation: ' + event.violatedDirective + ' ' + event.blockedURI);
    });`,
  });
  await page.goto(`${origin}/api/admin?code=${adminKey}`);
  return { page, problems };
}

function card(page: Page, address: string) {
  return page.locator(`li[data-mailbox="${address}"]`);
}

/** The text of a card's live region once it says `start` (Playwright waits on DOM changes, no sleep). */
async function resultOf(page: Page, selector: string, start: string): Promise<string> {
  const region = page.locator(`${selector} .result`).filter({ hasText: start });
  await region.waitFor();
  return region.innerText();
}

beforeAll(async () => {
  server = createServer((request, response) => {
    answer(request, response).catch((error: unknown) => {
      response.writeHead(500);
      response.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  await mkdir(artifacts, { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

beforeEach(() => {
  view = sampleView();
  received = [];
});

describe('rendering the admin page', () => {
  it('sends a strict policy with a nonce that only this page carries', () => {
    const nonce = 'bm9uY2Utbm9uY2Utbm9uY2U=';
    const page = renderAdminPage(sampleView(), { nonce });
    expect(page.contentSecurityPolicy).toBe(
      `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
    );
    expect(page.html.match(/<script\b[^>]*>/g)).toEqual([`<script nonce="${nonce}">`]);
    expect(page.html.match(/<style\b[^>]*>/g)).toEqual([`<style nonce="${nonce}">`]);
    expect(page.html).not.toMatch(/\b(src|href)="(https?:)?\/\//);
  });

  it('refuses a nonce that could break out of the header or the attribute', () => {
    for (const nonce of ['short', `abcdefghijklmnop'; script-src *`, 'abcdefghijklmnop"><script>'])
      expect(() => renderAdminPage(sampleView(), { nonce })).toThrow(/nonce/);
  });

  it('refuses an action URL that would take the admin key to another host', () => {
    for (const testUrl of [
      'https://elsewhere.example/test',
      '//elsewhere.example/test',
      '/\\elsewhere.example',
    ]) {
      const view = sampleView();
      view.mailboxes = [{ address: 'ops@contoso.com', mode: 'app', health: 'app-only', testUrl }];
      expect(() => renderAdminPage(view, { nonce: 'bm9uY2Utbm9uY2Utbm9uY2U=' })).toThrow(
        /path on this relay/,
      );
    }
  });
});

describe('the admin page in Chromium', () => {
  it('says each mailbox state, the credential, the queue and the alerts in words', async () => {
    const { page, problems } = await openAdminPage();
    const health = async (address: string) =>
      card(page, address).locator('dt:text-is("Health") + dd').innerText();

    expect(await health('ops@contoso.com')).toMatch(/^Healthy\b/);
    expect(await health('alerts@contoso.com')).toMatch(/^App-only \(no sign-in needed\)/);
    expect(await health('new@contoso.com')).toMatch(/^Not connected\b/);
    expect(await health('former@contoso.com')).toMatch(/^Disconnected\b/);
    expect(await health('reports@contoso.com')).toMatch(/^Needs a new sign-in\b/);
    expect(await health('billing@contoso.com')).toMatch(/^Failing\b/);
    expect(await health('archive@contoso.com')).toMatch(/^Unknown \(not checked yet\)/);

    const reports = await card(page, 'reports@contoso.com').innerText();
    expect(reports).toContain('Last refresh\n2026-11-24 06:00 UTC (6 hours ago)');
    expect(reports).toContain(
      'refresh_token_expired: AADSTS70043: the sign-in expired under a Conditional Access sign-in frequency policy. (2026-11-24 06:00 UTC (6 hours ago))',
    );
    expect(reports).toContain('What to do\nReconnect it and sign in as reports@contoso.com.');

    // An SMTP reply is shown as the text it is, never as markup.
    const billing = card(page, 'billing@contoso.com');
    expect(await billing.innerText()).toContain('535 5.7.3 Authentication unsuccessful <b>[AM0PR01]</b>');
    expect(await billing.locator('b').count()).toBe(0);

    const credential = await page.locator('section[aria-labelledby="credential-title"]').innerText();
    expect(credential).toContain('Type\nClient secret');
    expect(credential).toContain('Days left\n12 days left (expires 2026-12-06)');
    expect(credential).toContain(
      "Warning: The app's secret expires in 12 days: create a new one and store it under relay-client-secret.",
    );

    const queue = await page.locator('section[aria-labelledby="queue-title"]').innerText();
    expect(queue).toContain('Queued\n3 messages');
    expect(queue).toContain('Failed\n1 message');
    expect(queue).toContain('Poisoned\n2 messages');
    expect(queue).toContain('Fix its cause first');
    const firstPoisoned = await page.locator('li[data-poisoned="q-1"]').innerText();
    expect(firstPoisoned).toContain('Caller\nops-app');
    expect(firstPoisoned).toContain('Sender\nops@contoso.com');
    expect(firstPoisoned).toContain(
      'Reason\nsend_as_denied: ops@contoso.com may not send as sales@contoso.com. What to do: Grant Send As on sales@contoso.com to ops@contoso.com.',
    );

    const alerts = await page.locator('section[aria-labelledby="alerts-title"]').innerText();
    expect(alerts).toContain('Webhook at contoso.webhook.office.com');
    expect(alerts).toContain('Mail to it@contoso.com');

    const summary = await page.locator('section[aria-labelledby="summary-title"]').innerText();
    expect(summary).toContain('reports@contoso.com: Needs a new sign-in');
    expect(summary).not.toContain('ops@contoso.com');

    await page.screenshot({ path: `${artifacts}admin-page-static.png`, fullPage: true });
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('names the mailbox in every button and link a screen reader hears', async () => {
    const { page, problems } = await openAdminPage();
    for (const mailbox of view.mailboxes) {
      const snapshot = await card(page, mailbox.address).ariaSnapshot();
      const controls = [...snapshot.matchAll(/- (button|link) "([^"]*)"/g)].map((match) => match[2]);
      expect(controls.length).toBeGreaterThan(0);
      for (const name of controls) expect(name).toContain(mailbox.address);
    }
    expect(await page.getByRole('link', { name: 'Connect new@contoso.com', exact: true }).count()).toBe(1);
    expect(await page.getByRole('link', { name: 'Reconnect former@contoso.com', exact: true }).count()).toBe(
      1,
    );
    expect(
      await page.getByRole('button', { name: 'Retry message q-2 from billing@contoso.com' }).count(),
    ).toBe(1);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('asks for a confirmation, disconnects with the key from ?code=, and reloads to show the new state', async () => {
    const { page, problems } = await openAdminPage();
    await page.getByRole('button', { name: 'Disconnect ops@contoso.com' }).click();
    const confirm = page.getByRole('button', { name: 'Confirm disconnect ops@contoso.com' });
    expect(await page.locator(':focus').ariaSnapshot()).toBe('- button "Confirm disconnect ops@contoso.com"');
    expect(received.filter((request) => request.method === 'DELETE')).toEqual([]);

    const reloaded = page.waitForEvent('load');
    await confirm.click();
    await reloaded;

    const [disconnect, ...otherDeletes] = received.filter((request) => request.method === 'DELETE');
    expect(otherDeletes).toEqual([]);
    expect(disconnect?.path).toBe('/api/mailboxes/ops%40contoso.com/connection');
    expect(disconnect?.functionsKey).toBe(adminKey);
    expect(disconnect?.query.has('code')).toBe(false);
    expect(disconnect?.referer).toBeUndefined();
    const pageLoads = received.filter((request) => request.path === '/api/admin');
    expect(pageLoads.map((request) => request.query.get('code'))).toEqual([adminKey, adminKey]);

    await page.locator('#notice', { hasText: 'Disconnected ops@contoso.com.' }).waitFor();
    const ops = card(page, 'ops@contoso.com');
    expect(await ops.locator('dt:text-is("Health") + dd').innerText()).toMatch(/^Disconnected\b/);
    expect(await page.getByRole('link', { name: 'Reconnect ops@contoso.com' }).count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Disconnect ops@contoso.com' }).count()).toBe(0);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('sends nothing when the disconnect is cancelled and gives the focus back', async () => {
    const { page, problems } = await openAdminPage();
    const disconnect = page.getByRole('button', { name: 'Disconnect billing@contoso.com' });
    await disconnect.click();
    await page.getByRole('button', { name: 'Cancel disconnecting billing@contoso.com' }).click();

    expect(await resultOf(page, 'li[data-mailbox="billing@contoso.com"]', 'stays connected')).toBe(
      'billing@contoso.com stays connected.',
    );
    expect(await page.locator(':focus').ariaSnapshot()).toBe('- button "Disconnect billing@contoso.com"');
    expect(
      await page.getByRole('button', { name: 'Confirm disconnect billing@contoso.com' }).isVisible(),
    ).toBe(false);
    expect(received.filter((request) => request.method !== 'GET')).toEqual([]);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('tells the outcome of a connection test in the live region next to the mailbox', async () => {
    const { page, problems } = await openAdminPage();
    await page.getByRole('button', { name: 'Test ops@contoso.com' }).click();
    expect(await resultOf(page, 'li[data-mailbox="ops@contoso.com"]', 'Test passed')).toBe(
      'Test passed for ops@contoso.com: token, TCP connection, STARTTLS, XOAUTH2 sign-in worked.',
    );
    expect(await card(page, 'ops@contoso.com').locator('.result').getAttribute('aria-live')).toBe('polite');

    await page.getByRole('button', { name: 'Test billing@contoso.com' }).click();
    expect(await resultOf(page, 'li[data-mailbox="billing@contoso.com"]', 'Test failed')).toBe(
      'Test failed for billing@contoso.com at the XOAUTH2 sign-in step: Exchange refused XOAUTH2 for billing@contoso.com: SMTP AUTH is disabled for the mailbox (smtp_auth_disabled). What to do: Set-CASMailbox -Identity billing@contoso.com -SmtpClientAuthenticationDisabled $false',
    );

    const tests = received.filter((request) => request.method === 'POST');
    expect(tests.map((request) => [request.path, request.functionsKey, request.body])).toEqual([
      ['/api/mailboxes/ops%40contoso.com/test', adminKey, '{}'],
      ['/api/mailboxes/billing%40contoso.com/test', adminKey, '{}'],
    ]);
    expect(tests.every((request) => !request.query.has('code'))).toBe(true);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it("shows a relay error's message and remedy, and only words for an answer that is not JSON", async () => {
    const { page, problems } = await openAdminPage();
    await page.getByRole('button', { name: 'Retry message q-2 from billing@contoso.com' }).click();
    expect(await resultOf(page, 'li[data-poisoned="q-2"]', 'failed')).toBe(
      'Retrying message q-2 failed: Message q-2 was already queued again by another administrator (poisoned_send_changed). What to do: Reload the page to see the queue as it is now.',
    );

    await page.getByRole('button', { name: 'Test alerts@contoso.com' }).click();
    const gatewayError = await resultOf(page, 'li[data-mailbox="alerts@contoso.com"]', 'failed');
    expect(gatewayError).toBe(
      'Testing alerts@contoso.com failed: the relay answered HTTP 502 without an explanation. Its log has the details.',
    );
    expect(await page.locator('h1').allInnerTexts()).toEqual(['Mail relay administration']);
    expect(received.filter((request) => request.path === '/api/admin')).toHaveLength(1);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('retries a poisoned message with the key and reloads to say it is queued again', async () => {
    const { page, problems } = await openAdminPage();
    const reloaded = page.waitForEvent('load');
    await page.getByRole('button', { name: 'Retry message q-1 from ops@contoso.com' }).click();
    await reloaded;
    await page.locator('#notice', { hasText: 'queued again' }).waitFor();
    expect(await page.locator('#notice').innerText()).toBe(
      'Message q-1 from ops@contoso.com is queued again.',
    );
    const [retry] = received.filter((request) => request.method === 'POST');
    expect([retry?.path, retry?.functionsKey, retry?.body]).toEqual([
      '/api/queue/poison/q-1/retry',
      adminKey,
      '{}',
    ]);
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('carries code= onto Connect and Reconnect links and sends no referrer with them', async () => {
    const { page, problems } = await openAdminPage();
    const connect = page.getByRole('link', { name: 'Connect new@contoso.com' });
    const href = new URL((await connect.getAttribute('href')) ?? '');
    expect(href.origin).toBe(origin);
    expect(href.pathname).toBe('/api/oauth/start');
    expect(href.searchParams.get('mailbox')).toBe('new@contoso.com');
    expect(href.searchParams.get('code')).toBe(adminKey);
    expect(await connect.getAttribute('referrerpolicy')).toBe('no-referrer');

    await page.getByRole('link', { name: 'Reconnect reports@contoso.com' }).click();
    await page.waitForURL(/\/api\/oauth\/start/);
    const start = received.find((request) => request.path === '/api/oauth/start');
    expect(start?.query.get('mailbox')).toBe('reports@contoso.com');
    expect(start?.query.get('code')).toBe(adminKey);
    expect(start?.referer).toBeUndefined();
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('fits a 375 px phone without sideways scrolling', async () => {
    const { page, problems } = await openAdminPage({ width: 375, height: 800 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await page.screenshot({ path: `${artifacts}admin-page-static-phone.png`, fullPage: true });
    expect(problems).toEqual([]);
    await page.context().close();
  });

  it('keeps text and buttons at 4.5:1 contrast or more and shows where the keyboard focus is', async () => {
    const { page, problems } = await openAdminPage();
    // WCAG 2.x relative luminance and contrast ratio, from the colours the browser computed.
    const samples = (await page.evaluate(`(() => {
      const channels = (colour) => {
        const parts = colour.match(/[\\d.]+/g).map(Number);
        return { rgb: parts.slice(0, 3), alpha: parts.length > 3 ? parts[3] : 1 };
      };
      const luminance = (rgb) => {
        const [r, g, b] = rgb.map((value) => {
          const c = value / 255;
          return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const backgroundOf = (element) => {
        for (let node = element; node !== null; node = node.parentElement) {
          const background = channels(getComputedStyle(node).backgroundColor);
          if (background.alpha > 0) return background.rgb;
        }
        return [255, 255, 255];
      };
      const texts = document.querySelectorAll('h1, h2, h3, p, dt, dd, li, code, strong, time, button, a, .badge');
      return [...texts]
        .filter((element) => element.textContent.trim() !== '' && element.getClientRects().length > 0)
        .map((element) => {
          const [light, dark] = [luminance(channels(getComputedStyle(element).color).rgb), luminance(backgroundOf(element))].sort((a, b) => b - a);
          return { element: element.tagName.toLowerCase() + ' ' + element.textContent.trim().slice(0, 40), ratio: (light + 0.05) / (dark + 0.05) };
        });
    })()`)) as { element: string; ratio: number }[];
    expect(samples.some((sample) => sample.element.startsWith('button'))).toBe(true);
    expect(samples.filter((sample) => sample.ratio < 4.5)).toEqual([]);

    await page.keyboard.press('Tab');
    const focusOutline = (await page.evaluate(
      `(() => { const style = getComputedStyle(document.activeElement); return { tag: document.activeElement.tagName, style: style.outlineStyle, width: parseFloat(style.outlineWidth) }; })()`,
    )) as { tag: string; style: string; width: number };
    expect(focusOutline.tag).toMatch(/^(A|BUTTON)$/);
    expect(focusOutline.style).toBe('solid');
    expect(focusOutline.width).toBeGreaterThanOrEqual(2);
    expect(problems).toEqual([]);
    await page.context().close();
  });
});
