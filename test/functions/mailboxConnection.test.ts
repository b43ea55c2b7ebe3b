import { HttpRequest } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { disconnectMailbox } from '../../functions/disconnectMailbox.ts';
import { health as healthFunction } from '../../functions/health.ts';
import '../../functions/oauthCallback.ts';
import { bindHttp, functionApp, type RuntimeSource } from '../../functions/register.ts';
import { send as sendFunction } from '../../functions/send.ts';
import { RelayError } from '../../shared/errors.ts';
import { connectionCheckSeconds } from '../../shared/health/mailboxHealth.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import type { CachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { tokenCacheSecretName } from '../../shared/tokens/tokenCachePlugin.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import { connectMailbox } from '../support/connectMailbox.ts';
import { openCachedKeyVaultStore } from '../support/keyVaultStore.ts';
import {
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * A delegated mailbox's connection over its whole life, against a Key Vault that behaves like the real one
 * (soft delete: a deleted name cannot be written again) and state shared through Azurite by two relay
 * instances: connect, send, disconnect (both instances refuse), connect again at once, and the health that
 * sends, /api/health and the callback pages show on the way.
 */
const reports = 'reports@contoso.com';
const shared = 'shared@contoso.com';
const alerts = 'alerts@contoso.com';
const publicBaseUrl = 'https://relay.contoso.com';
const consentUrl = (mailbox: string) =>
  `${publicBaseUrl}/api/oauth/start?mailbox=${encodeURIComponent(mailbox)}`;

let azurite: Azurite;
let harness: RelayHarness;
let vault: KeyVaultPeer;
let secrets: CachedSecretStore;
let first: Runtime;
let second: Runtime;
let secondClock = 0;

const openVault = () => openCachedKeyVaultStore(vault);

const connect = (runtime: Runtime, mailbox: string, options: { recreatedUser?: boolean } = {}) =>
  connectMailbox({ identity: harness.identity, runtime }, mailbox, options);

function send(runtime: Runtime, from: string, subject = 'connection test') {
  return bindHttp(sendFunction, runtime)(
    jsonRequest(
      'http://localhost:7071/api/send',
      { from, to: 'ops@contoso.com', subject, text: 'x' },
      { 'x-relay-key': 'caller-key-alerts-0123456789' },
    ),
    capturingContext().context,
  );
}

function disconnect(runtime: Runtime, address: string) {
  return bindHttp(disconnectMailbox, runtime)(
    new HttpRequest({
      method: 'DELETE',
      url: `http://localhost:7071/api/mailboxes/${encodeURIComponent(address)}/connection`,
      params: { address },
    }),
    capturingContext().context,
  );
}

function healthOf(runtime: Runtime) {
  return bindHttp(healthFunction, runtime)(
    new HttpRequest({ method: 'GET', url: 'http://localhost:7071/api/health' }),
    capturingContext().context,
  );
}

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    storeClientSecret: false,
    callers: [
      {
        name: 'alerts-app',
        apiKey: 'caller-key-alerts-0123456789',
        senders: [alerts, reports, shared],
      },
    ],
    settings: {
      RELAY_MAILBOXES: JSON.stringify([
        { address: reports, mode: 'delegated' },
        { address: shared, mode: 'delegated' },
        { address: alerts, mode: 'app' },
      ]),
      RELAY_PUBLIC_BASE_URL: publicBaseUrl,
      RELAY_STATE_STORE: 'storage',
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
    },
  });
  vault = await startKeyVaultPeer({ authority: harness.identity.authority });
  vault.putSecretDirect('relay-client-secret', appClientSecret, {
    contentType: 'text/plain',
    expiresOn: new Date(Date.now() + 200 * 86_400_000),
  });
  secrets = await openVault();
  first = createRuntime(harness.config, secrets);
  second = createRuntime(harness.config, await openVault(), { now: () => Date.now() + secondClock });
  await connect(first, reports);
  await connect(first, shared);
}, 60_000);

afterAll(async () => {
  await first?.close();
  await second?.close();
  await vault?.close();
  await harness?.close();
  await azurite?.stop();
});

describe('disconnecting a delegated mailbox', () => {
  it('refuses sends on every instance, keeps the secret, and connects again at once', async () => {
    expect((await send(first, reports)).status).toBe(200);
    expect((await send(second, reports)).status).toBe(200);
    const versionsBefore = vault.secretVersions(tokenCacheSecretName(reports)).length;

    const response = await disconnect(first, 'Reports@Contoso.com');
    expect(response.status).toBe(200);
    expect(response.jsonBody).toMatchObject({
      mailbox: reports,
      health: 'disconnected',
      consentUrl: consentUrl(reports),
    });

    harness.smtp.reset();
    // The instance that disconnected refuses at once; the other within its connection check, although it
    // still holds a valid access token for the mailbox.
    const refused = await send(first, reports);
    expect(refused.status).toBe(409);
    expect(refused.jsonBody).toMatchObject({
      error: {
        code: 'mailbox_not_connected',
        message: expect.stringContaining('disconnected'),
        remedy: expect.stringContaining(consentUrl(reports)),
      },
    });
    secondClock = (connectionCheckSeconds + 1) * 1000;
    const refusedElsewhere = await send(second, reports);
    expect(refusedElsewhere.status).toBe(409);
    expect(harness.smtp.messages).toHaveLength(0);
    // The other mailbox is untouched.
    expect((await send(second, shared)).status).toBe(200);

    // Not deleted: one more version, holding no account and no refresh token.
    const versions = vault.secretVersions(tokenCacheSecretName(reports));
    expect(versions).toHaveLength(versionsBefore + 1);
    const emptied = JSON.parse(vault.secretValue(tokenCacheSecretName(reports)) ?? '{}') as Record<
      string,
      object
    >;
    expect(Object.keys(emptied.Account ?? {})).toHaveLength(0);
    expect(Object.keys(emptied.RefreshToken ?? {})).toHaveLength(0);
    expect(vault.countOperations('delete')).toBe(0);

    const status = await second.status();
    expect(status.mailboxes.find((mailbox) => mailbox.address === reports)).toMatchObject({
      health: 'disconnected',
      consentUrl: consentUrl(reports),
    });
    // The timer leaves it alone: no refresh, no failure recorded over the disconnect.
    const refreshed = await first.maintenance.refreshAll();
    expect(refreshed.mailboxes.find((outcome) => outcome.mailbox === reports)).toEqual({
      mailbox: reports,
      ok: false,
      disconnected: true,
    });

    // Connecting again through the consent flow works at once, on the same secret name.
    await connect(second, reports);
    expect(vault.requests.filter((request) => request.status === 409)).toHaveLength(0);
    harness.smtp.reset();
    expect((await send(second, reports, 'after reconnect')).status).toBe(200);
    // The instance that disconnected it sends again at once too.
    expect((await send(first, reports, 'after reconnect, other instance')).status).toBe(200);
    const delivered = await harness.smtp.waitForMessages(2);
    expect(delivered.map((message) => message.authUser)).toEqual([reports, reports]);
    expect((await first.status()).mailboxes.find((mailbox) => mailbox.address === reports)?.health).toBe(
      'healthy',
    );
  });

  it('keeps only the new account when a user re-created under the same address connects again', async () => {
    // A new object id under the same address, as a re-created account has.
    await connect(first, reports, { recreatedUser: true });
    const stored = JSON.parse(vault.secretValue(tokenCacheSecretName(reports)) ?? '{}') as Record<
      string,
      Record<string, { home_account_id?: string }>
    >;
    expect(Object.keys(stored.Account ?? {})).toHaveLength(1);
    const [account] = Object.values(stored.Account ?? {});
    expect(Object.values(stored.RefreshToken ?? {}).map((token) => token.home_account_id)).toEqual([
      account?.home_account_id,
    ]);
    harness.smtp.reset();
    expect((await send(second, reports, 'after the account was re-created')).status).toBe(200);
  });

  it('names the field or the mode when the address cannot be disconnected', async () => {
    const notDelegated = await disconnect(first, alerts);
    expect(notDelegated.status).toBe(400);
    expect(notDelegated.jsonBody).toMatchObject({ error: { code: 'mailbox_not_delegated' } });
    const invalid = await disconnect(first, 'not an address');
    expect(invalid.status).toBe(400);
    expect(invalid.jsonBody).toMatchObject({
      error: { code: 'invalid_request', details: [{ field: 'address' }] },
    });
  });
});

describe('health recorded by sends, and GET /api/health', () => {
  it('answers 200 while every mailbox can send and the credential is valid, without a Key Vault read', async () => {
    const vaultRequests = vault.requests.length;
    const response = await healthOf(second);
    expect(response.status).toBe(200);
    expect(response.jsonBody).toMatchObject({ healthy: true, problems: [], warnings: [] });
    expect(vault.requests.length).toBe(vaultRequests);
  });

  it('marks a mailbox whose refresh token died when a send meets it, and says how to fix it', async () => {
    harness.identity.revokeRefreshTokensFor(shared);
    // An hour later: the stored access token has expired, so a fresh instance's send must use the refresh token.
    const cacheName = tokenCacheSecretName(shared);
    const stored = JSON.parse(vault.secretValue(cacheName) ?? '{}') as Record<string, unknown>;
    const [latest] = vault.secretVersions(cacheName).slice(-1);
    vault.putSecretDirect(cacheName, JSON.stringify({ ...stored, AccessToken: {} }), {
      tags: latest?.tags ?? {},
    });
    const fresh = createRuntime(harness.config, await openVault());
    try {
      const refused = await send(fresh, shared);
      expect(refused.status).toBe(502);
      expect(refused.jsonBody).toMatchObject({ error: { code: 'refresh_token_expired' } });
    } finally {
      await fresh.close();
    }
    const response = await healthOf(first);
    expect(response.status).toBe(503);
    const body = response.jsonBody as { problems: Record<string, string>[] };
    expect(body.problems).toEqual([
      expect.objectContaining({
        subject: shared,
        state: 'needs_consent',
        code: 'refresh_token_expired',
        consentUrl: consentUrl(shared),
        remedy: expect.stringContaining(consentUrl(shared)),
      }),
    ]);
    expect(JSON.stringify(body)).not.toContain(appClientSecret);
    await connect(first, shared);
    expect((await healthOf(second)).status).toBe(200);
  });

  it('marks an app-only mailbox Exchange refuses to authenticate, and clears it with the next good send', async () => {
    await first.transports.closeAll();
    harness.smtp.replyNext({
      stage: 'auth',
      code: 535,
      message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.',
    });
    const refused = await send(first, alerts);
    expect(refused.jsonBody).toMatchObject({ error: { code: 'smtp_auth_disabled' } });
    const failing = await healthOf(second);
    expect(failing.status).toBe(503);
    expect(failing.jsonBody).toMatchObject({
      problems: [{ subject: alerts, state: 'failing', code: 'smtp_auth_disabled' }],
    });
    expect((await send(first, alerts)).status).toBe(200);
    expect((await healthOf(second)).status).toBe(200);
  });

  it('reports a wrong client secret met by a send as a credential problem', async () => {
    const wrongSecret = await openVault();
    await wrongSecret.setSecret('relay-client-secret', 'not-the-secret', {
      expiresOn: new Date(Date.now() + 200 * 86_400_000),
    });
    const fresh = createRuntime(harness.config, wrongSecret);
    try {
      const refused = await send(fresh, alerts);
      expect(refused.jsonBody).toMatchObject({ error: { code: 'client_secret_invalid' } });
      const response = await healthOf(first);
      expect(response.status).toBe(503);
      expect(response.jsonBody).toMatchObject({
        problems: [{ subject: 'credential', state: 'failing', code: 'client_secret_invalid' }],
      });
      expect(JSON.stringify(response.jsonBody)).not.toContain('not-the-secret');
    } finally {
      await wrongSecret.setSecret('relay-client-secret', appClientSecret, {
        expiresOn: new Date(Date.now() + 200 * 86_400_000),
      });
      await fresh.close();
    }
    // The right secret again: the next good send clears the credential's record.
    await first.transports.closeAll();
    const recovered = createRuntime(harness.config, await openVault());
    try {
      expect((await send(recovered, alerts)).status).toBe(200);
    } finally {
      await recovered.close();
    }
    expect((await healthOf(first)).status).toBe(200);
  });
});

describe('the anonymous callback page', () => {
  it('names no setting when the relay cannot start, and may never be framed', async () => {
    const broken: RuntimeSource = async () => {
      throw new RelayError('relay_misconfigured', {
        message:
          'RELAY_CLIENT_ID must be a GUID (got contoso-relay), RELAY_KEY_VAULT_URL https://kv-x.vault.azure.net',
      });
    };
    const { lines, context } = capturingContext('oauthCallback');
    const registered = functionApp.http.get('oauthCallback');
    const page = await registered?.(
      new HttpRequest({ method: 'GET', url: `${publicBaseUrl}/api/oauth/callback?state=x` }),
      broken,
      context,
    );
    expect(page?.status).toBe(500);
    const html = String(page?.body);
    expect(html).toContain('relay_misconfigured');
    expect(html).toContain(context.invocationId);
    expect(html).not.toMatch(/RELAY_|vault|contoso-relay/);
    expect(lines.join('\n')).toContain('RELAY_CLIENT_ID must be a GUID');
    const headers = page?.headers as Record<string, string>;
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['x-frame-options']).toBe('DENY');
  });
});
