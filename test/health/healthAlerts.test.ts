import { readFile } from 'node:fs/promises';
import type { HttpResponseInit } from '@azure/functions';
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import type { RefreshReport } from '../../shared/delegated/tokenMaintenance.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { createFileSecretStore } from '../../shared/secrets/fileSecretStore.ts';
import type { SecretStore } from '../../shared/secrets/secretStore.ts';
import { type RunningHttpsServer, readBody, startHttpsServer } from '../peers/httpsServer.ts';
import { sharedTestCertificate } from '../peers/testCertificate.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import { connectMailbox } from '../support/connectMailbox.ts';
import {
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Alerts as an on-call person meets them: two relay instances (each with its own memory, as two Flex
 * Consumption workers) share one state table in Azurite and one secret store, and a Teams-style webhook
 * on loopback HTTPS plus the SMTP peer (RELAY_ALERT_EMAIL) are what a person would read. Every state is
 * announced once over both instances, the alert mail goes through the healthy app-only mailbox, an alert a
 * channel missed is delivered by a later timer run, and no text carries a secret, a token or the webhook's
 * own path.
 */
const reports = 'reports@contoso.com';
const shared = 'shared@contoso.com';
const appMailbox = 'relay@contoso.com';
const onCall = 'oncall@contoso.com';
const publicBaseUrl = 'https://relay.contoso.example';
const opsKey = 'caller-key-ops-0123456789';
// Shaped like a Teams workflow URL: the path and the signature are the webhook's secret.
const webhookSecretPath = '/workflows/4f1c9a7e0b2d4e6f/triggers/manual/paths/invoke';
const webhookSignature = 'sig-Q9vT2xLw7mZpR4kN8cYb';
const day = 86_400_000;

const consentLink = (mailbox: string) =>
  `${publicBaseUrl}/api/oauth/start?mailbox=${encodeURIComponent(mailbox)}`;

interface WebhookPost {
  contentType: string | undefined;
  body: Record<string, unknown>;
}

let azurite: Azurite;
let webhook: RunningHttpsServer;
const webhookPosts: WebhookPost[] = [];
/** Statuses the webhook answers with, one per POST, before it goes back to 200. */
const scriptedWebhookStatuses: number[] = [];
let harness: RelayHarness;
/** The one store behind both instances' caches, as one Key Vault is behind every instance. */
let vault: SecretStore;
let clientSecretName: string;
let instanceA: Runtime;
let instanceB: Runtime;
const instanceLogs: string[] = [];
/** Every refresh token and access token the token caches ever held, to look for in alert texts. */
const tokensSeen = new Set<string>();

type SendResponse = Omit<HttpResponseInit, 'body'> & { body: Record<string, unknown> };

async function sendAs(runtime: Runtime, from: string): Promise<SendResponse> {
  const { context } = capturingContext();
  const response = await bindHttp(send, runtime)(
    jsonRequest(
      'http://localhost:7071/api/send',
      { from, to: 'customer@fabrikam.com', subject: 'Invoice', text: 'Attached.' },
      { 'x-relay-key': opsKey },
    ),
    context,
  );
  return { ...response, body: response.jsonBody as Record<string, unknown> };
}

/** The tokenRefresh timer firing on both instances at the same moment. */
async function timerOnBothInstances(): Promise<[RefreshReport, RefreshReport]> {
  const reportsOfRun = await Promise.all([
    instanceA.maintenance.refreshAll(),
    instanceB.maintenance.refreshAll(),
  ]);
  await allAlertsSettled();
  return reportsOfRun;
}

async function allAlertsSettled(): Promise<void> {
  await Promise.all([instanceA.alerts.idle(), instanceB.alerts.idle()]);
}

const textsPosted = (from = 0) => webhookPosts.slice(from).map((post) => String(post.body.text));

async function alertMails(from = 0) {
  return Promise.all(
    harness.smtp.messages.slice(from).map(async (message) => ({
      envelopeTo: message.envelopeTo,
      authUser: message.authUser,
      parsed: await simpleParser(message.raw),
      raw: message.raw.toString('utf8'),
    })),
  );
}

/** Connects the mailbox through instance A's consent flow, as the same Entra user each time. */
const connectAsSameUser = (mailbox: string) =>
  connectMailbox({ identity: harness.identity, runtime: instanceA }, mailbox);

/** Stores the app's client secret the way an administrator does: in the vault, read by both instances afresh. */
async function storeClientSecret(expiresOn: Date): Promise<void> {
  await vault.setSecret(clientSecretName, appClientSecret, { expiresOn });
  // Each instance reads it again once its cache's TTL has passed; the test does not wait for that.
  instanceA.secrets.invalidate(clientSecretName);
  instanceB.secrets.invalidate(clientSecretName);
}

async function rememberTokensInStore(): Promise<void> {
  const file = JSON.parse(await readFile(harness.secretsPath, 'utf8')) as {
    secrets: Record<string, { value: string }>;
  };
  for (const { value } of Object.values(file.secrets)) {
    if (!value.startsWith('{')) continue;
    const cache = JSON.parse(value) as Record<string, Record<string, { secret?: string }> | undefined>;
    for (const section of ['RefreshToken', 'AccessToken', 'IdToken']) {
      for (const entry of Object.values(cache[section] ?? {})) if (entry.secret) tokensSeen.add(entry.secret);
    }
  }
  for (const accessToken of harness.identity.issuedAccessTokens.keys()) tokensSeen.add(accessToken);
}

beforeAll(async () => {
  azurite = await startAzurite();
  webhook = await startHttpsServer(await sharedTestCertificate(), async (request, response) => {
    const raw = await readBody(request);
    webhookPosts.push({ contentType: request.headers['content-type'], body: JSON.parse(raw) });
    const status = scriptedWebhookStatuses.shift() ?? 200;
    response.writeHead(status, { 'content-type': 'text/plain' });
    response.end(status === 200 ? '1' : 'workflow failed');
  });
  harness = await startRelayHarness({
    storeClientSecret: false,
    callers: [{ name: 'ops-app', apiKey: opsKey, senders: [reports, shared, appMailbox] }],
    settings: {
      RELAY_STATE_STORE: 'storage',
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_PUBLIC_BASE_URL: publicBaseUrl,
      RELAY_MAILBOXES: JSON.stringify([
        { address: reports, mode: 'delegated' },
        { address: shared, mode: 'delegated' },
        { address: appMailbox, mode: 'app' },
      ]),
      RELAY_ALERT_WEBHOOK_URL: `${webhook.origin}${webhookSecretPath}?api-version=2016-06-01&sig=${webhookSignature}`,
      RELAY_ALERT_EMAIL: onCall,
    },
  });
  clientSecretName = harness.config.identity.clientSecretName;
  vault = createFileSecretStore(harness.secretsPath);
  const cacheOptions = { ttlSeconds: harness.config.secrets.cacheSeconds };
  const log = (line: string) => instanceLogs.push(line);
  instanceA = createRuntime(harness.config, createCachedSecretStore(vault, cacheOptions), { log });
  instanceB = createRuntime(harness.config, createCachedSecretStore(vault, cacheOptions), { log });
  // A secret with plenty of time left: its expiry says nothing until it comes within 30 days.
  await storeClientSecret(new Date(Date.now() + 200 * day));
  // Connected before any timer run: a mailbox never connected is a problem of its own (not_connected).
  for (const mailbox of [reports, shared]) await connectAsSameUser(mailbox);
  await allAlertsSettled();
  await rememberTokensInStore();
});

afterAll(async () => {
  await Promise.all([instanceA?.close(), instanceB?.close()]);
  await harness?.close();
  await webhook?.close();
  await azurite?.stop();
});

beforeEach(async () => {
  // No pooled SMTP session carries over: a scripted AUTH reply meets a fresh login.
  await Promise.all([instanceA.transports.closeAll(), instanceB.transports.closeAll()]);
});

afterEach(async () => {
  await rememberTokensInStore();
});

describe('health alerts over two instances sharing one state table', () => {
  it('says nothing while every mailbox is healthy and the credential has 200 days left', async () => {
    const [first, second] = await timerOnBothInstances();
    for (const run of [first, second]) {
      expect(run.mailboxes.filter((outcome) => !outcome.ok)).toEqual([]);
      expect(run.credential.daysLeft).toBe(199);
    }
    expect(webhookPosts).toEqual([]);
    expect(harness.smtp.messages).toEqual([]);
  });

  it('announces a refresh token that died exactly once, on the webhook and by mail through the app-only mailbox', async () => {
    harness.identity.revokeRefreshTokensFor(reports);
    const [first, second] = await timerOnBothInstances();

    for (const run of [first, second]) {
      expect(run.mailboxes.find((outcome) => outcome.mailbox === reports)).toMatchObject({
        ok: false,
        aadsts: 'AADSTS700082',
        needsConsent: true,
      });
    }
    expect(webhookPosts).toHaveLength(1);
    const [post] = webhookPosts;
    expect(post?.contentType).toBe('application/json');
    expect(Object.keys(post?.body ?? {})).toEqual(['text']);
    const text = String(post?.body.text);
    expect(text).toContain(`${reports} needs a new sign-in`);
    expect(text).toContain('AADSTS700082');
    expect(text).toContain(consentLink(reports));

    const mails = await alertMails();
    expect(mails).toHaveLength(1);
    expect(mails[0]?.envelopeTo).toEqual([onCall]);
    // Through the healthy app-only mailbox: never through the mailbox that cannot sign in.
    expect(mails[0]?.authUser).toBe(appMailbox);
    expect(mails[0]?.parsed.from?.value[0]?.address).toBe(appMailbox);
    expect(mails[0]?.parsed.subject).toBe(`Mail relay: ${reports} needs a new sign-in`);
    expect(mails[0]?.parsed.text).toContain(consentLink(reports));
    expect(mails[0]?.parsed.text).toContain('AADSTS700082');
  });

  it('stays quiet on the next timer runs while nothing changed', async () => {
    await timerOnBothInstances();
    await timerOnBothInstances();
    expect(webhookPosts).toHaveLength(1);
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('records the same dead sign-in met by a send without announcing it again', async () => {
    const before = await instanceB.mailboxHealth.read(reports);
    // Exchange refuses the access token it still holds, so the send asks for a new one and meets AADSTS700082.
    harness.smtp.replyNext({ stage: 'auth', code: 535, message: '5.7.3 Authentication unsuccessful' });
    const response = await sendAs(instanceA, reports);
    await allAlertsSettled();

    expect(response.status).toBe(502);
    expect(response.body.error).toMatchObject({
      code: 'refresh_token_expired',
      remedy: expect.stringContaining(consentLink(reports)),
    });
    const after = await instanceB.mailboxHealth.read(reports);
    expect(instanceB.mailboxHealth.stateOf(reports, after)).toBe('needs_consent');
    expect(after?.lastError).toMatchObject({ code: 'refresh_token_expired', aadsts: 'AADSTS700082' });
    expect(Date.parse(after?.lastError?.at ?? '')).toBeGreaterThan(Date.parse(before?.lastError?.at ?? ''));
    expect(webhookPosts).toHaveLength(1);
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('announces the reconnected mailbox as recovered, once', async () => {
    const postsBefore = webhookPosts.length;
    const mailsBefore = harness.smtp.messages.length;
    await connectAsSameUser(reports);
    await allAlertsSettled();
    await timerOnBothInstances();

    expect(textsPosted(postsBefore)).toHaveLength(1);
    expect(textsPosted(postsBefore)[0]).toContain(`${reports} recovered`);
    const mails = await alertMails(mailsBefore);
    expect(mails.map((mail) => mail.parsed.subject)).toEqual([`Mail relay: ${reports} recovered`]);
    expect(mails[0]?.authUser).toBe(appMailbox);
  });

  it('announces a disconnect once, with the link that connects the mailbox again', async () => {
    const postsBefore = webhookPosts.length;
    const mailsBefore = harness.smtp.messages.length;
    await instanceB.disconnect(shared);
    await allAlertsSettled();
    await timerOnBothInstances();

    const texts = textsPosted(postsBefore);
    expect(texts).toHaveLength(1);
    expect(texts[0]).toContain(`${shared} was disconnected`);
    expect(texts[0]).toContain(consentLink(shared));
    const mails = await alertMails(mailsBefore);
    expect(mails.map((mail) => mail.parsed.subject)).toEqual([`Mail relay: ${shared} was disconnected`]);
  });

  it('warns once of a client secret 20 days from expiry, and once when a renewed secret is valid again', async () => {
    const postsBefore = webhookPosts.length;
    const mailsBefore = harness.smtp.messages.length;
    await storeClientSecret(new Date(Date.now() + 20 * day + 60_000));
    for (let run = 0; run < 3; run += 1) await timerOnBothInstances();

    const warnings = textsPosted(postsBefore);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('the app credential expires in 20 days');
    expect(warnings[0]).toContain(clientSecretName);

    await storeClientSecret(new Date(Date.now() + 200 * day));
    for (let run = 0; run < 3; run += 1) await timerOnBothInstances();

    const texts = textsPosted(postsBefore);
    expect(texts).toHaveLength(2);
    expect(texts[1]).toContain('the app credential is valid again');
    const mails = await alertMails(mailsBefore);
    expect(mails.map((mail) => mail.parsed.subject)).toEqual([
      'Mail relay: the app credential expires in 20 days',
      'Mail relay: the app credential is valid again',
    ]);
  });

  it('delivers an alert the webhook refused (500) on the next timer run, once, without mailing it twice', async () => {
    const postsBefore = webhookPosts.length;
    const mailsBefore = harness.smtp.messages.length;
    scriptedWebhookStatuses.push(500);
    await connectAsSameUser(shared);
    await allAlertsSettled();
    // The refused POST arrived; the mail channel took the alert.
    expect(webhookPosts.length - postsBefore).toBe(1);

    await timerOnBothInstances();
    await timerOnBothInstances();

    const texts = textsPosted(postsBefore);
    expect(texts).toHaveLength(2);
    expect(texts[1]).toBe(texts[0]);
    expect(texts[1]).toContain(`${shared} recovered`);
    const mails = await alertMails(mailsBefore);
    expect(mails.map((mail) => mail.parsed.subject)).toEqual([`Mail relay: ${shared} recovered`]);
    expect(instanceLogs.join('\n')).toContain('the webhook answered 500');
  });

  it('gives an alert back when no channel took it, and a timer run on either instance delivers it to both once', async () => {
    const postsBefore = webhookPosts.length;
    const mailsBefore = harness.smtp.messages.length;
    scriptedWebhookStatuses.push(503);
    // Exchange refuses the alert mail's only recipient: the mail channel fails too.
    harness.smtp.replyNext({ stage: 'rcpt', code: 550, message: '5.1.10 RESOLVER.ADR.RecipientNotFound' });
    await instanceB.disconnect(reports);
    await allAlertsSettled();
    expect(webhookPosts.length - postsBefore).toBe(1);
    expect(harness.smtp.messages.length - mailsBefore).toBe(0);
    expect(await instanceA.mailboxHealth.read(reports)).not.toMatchObject({ announced: 'disconnected' });

    await timerOnBothInstances();
    await timerOnBothInstances();

    const texts = textsPosted(postsBefore);
    expect(texts).toHaveLength(2);
    expect(texts[1]).toContain(`${reports} was disconnected`);
    const mails = await alertMails(mailsBefore);
    expect(mails.map((mail) => mail.parsed.subject)).toEqual([`Mail relay: ${reports} was disconnected`]);
    expect(await instanceA.mailboxHealth.read(reports)).toMatchObject({ announced: 'disconnected' });
  });

  it('does not announce a recovery when a send still goes through on the access token issued before the sign-in died', async () => {
    harness.identity.revokeRefreshTokensFor(shared);
    await timerOnBothInstances();
    const postsBefore = webhookPosts.length;
    expect(textsPosted(postsBefore - 1)[0]).toContain(`${shared} needs a new sign-in`);

    // Exchange takes an access token until it expires (up to an hour) after its refresh token died: the
    // send works, but only a new sign-in keeps the mailbox sending, so nothing recovered.
    const response = await sendAs(instanceA, shared);
    await allAlertsSettled();

    expect(response.status).toBe(200);
    const record = await instanceB.mailboxHealth.read(shared);
    expect(
      instanceB.mailboxHealth.stateOf(shared, record),
      'a send on a still-valid access token must not clear needs_consent (shared/health/mailboxHealth.ts recordSendOutcome)',
    ).toBe('needs_consent');
    // Otherwise the next timer run finds the dead sign-in again: "recovered", then "needs a new sign-in".
    await timerOnBothInstances();
    expect(textsPosted(postsBefore), 'no "recovered" alert while the mailbox still needs a sign-in').toEqual(
      [],
    );
  });

  it('does not warn again from an instance that still holds the expiring secret in its cache after a renewal', async () => {
    await storeClientSecret(new Date(Date.now() + 20 * day + 60_000));
    await timerOnBothInstances();
    const postsBefore = webhookPosts.length;
    expect(textsPosted(postsBefore - 1)[0]).toContain('the app credential expires in 20 days');
    try {
      // Instance A stores the renewed secret; instance B still serves the one it read before (its cache's
      // TTL has not passed), as an instance that sat idle does on its first read.
      await instanceA.secrets.setSecret(clientSecretName, appClientSecret, {
        expiresOn: new Date(Date.now() + 200 * day),
      });
      await timerOnBothInstances();
      await timerOnBothInstances();

      expect(
        textsPosted(postsBefore),
        'one "valid again", not alternating with "expires" as each instance announces its own view (the timer\'s credential check should read the store, not the cache: shared/delegated/tokenMaintenance.ts)',
      ).toEqual([expect.stringContaining('the app credential is valid again')]);
    } finally {
      await storeClientSecret(new Date(Date.now() + 200 * day));
      await timerOnBothInstances();
    }
  });

  it('puts no secret, token or webhook path into any alert, mail or log line', async () => {
    const everything = [
      ...textsPosted(),
      ...(await alertMails()).flatMap((mail) => [mail.raw, `${mail.parsed.subject}\n${mail.parsed.text}`]),
      ...instanceLogs,
    ].join('\n');
    expect(webhookPosts.length).toBeGreaterThanOrEqual(6);
    expect(tokensSeen.size).toBeGreaterThan(4);
    expect(everything).not.toContain(appClientSecret);
    expect(everything).not.toContain(opsKey);
    for (const token of tokensSeen) expect(everything).not.toContain(token);
    expect(everything).not.toContain(webhookSecretPath);
    expect(everything).not.toContain(webhookSignature);
  });
});
