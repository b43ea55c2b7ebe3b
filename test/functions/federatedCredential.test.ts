import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send as sendFunction } from '../../functions/send.ts';
import { loadConfig } from '../../shared/config.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import { describeCredentialExpiry } from '../../shared/tokens/credentialExpiry.ts';
import { type ManagedIdentityPeer, startManagedIdentityPeer } from '../peers/managedIdentityPeer.ts';
import { completeConsent } from '../support/connectMailbox.ts';
import {
  appClientId,
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * The secretless credential, end to end: the real ManagedIdentityCredential reads App Service's
 * IDENTITY_ENDPOINT / IDENTITY_HEADER and asks the loopback managed-identity endpoint for a token for
 * api://AzureADTokenExchange; MSAL sends it as the client assertion; the identity peer accepts it only
 * because the app registration trusts that issuer, subject and audience, and the signature checks out.
 *
 * MSAL keeps the managed-identity source it picked (with the endpoint it read) in a static field, so the
 * variables are set before the first token request of this file and stay until its end; vi.stubEnv
 * puts the process environment back afterwards, and each test file runs in its own module graph.
 */
let harness: RelayHarness;
let managedIdentity: ManagedIdentityPeer;
const runtimes: Runtime[] = [];

const message = {
  from: 'alerts@contoso.com',
  to: 'ops@contoso.com',
  subject: 'secretless',
  text: 'sent with a federated credential',
};
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };

function trustManagedIdentity(subject = managedIdentity.principalId): void {
  harness.identity.registerClient({
    clientId: appClientId,
    federatedCredentials: [
      {
        issuer: managedIdentity.issuer,
        subject,
        audience: 'api://AzureADTokenExchange',
        issuerPublicKeyPem: managedIdentity.publicKeyPem,
      },
    ],
  });
}

/** A runtime of its own: the shared one keeps its app token cached between tests. */
function freshRuntime(settings: Record<string, string> = {}): Runtime {
  const base = {
    RELAY_TENANT_ID: harness.config.identity.tenantId ?? '',
    RELAY_CLIENT_ID: appClientId,
    RELAY_AUTHORITY_HOST: harness.identity.authorityHost,
    RELAY_CREDENTIAL_TYPE: 'federated',
    RELAY_MANAGED_IDENTITY_CLIENT_ID: managedIdentity.clientId,
    RELAY_SMTP_HOST: 'localhost',
    RELAY_SMTP_PORT: String(harness.config.smtp.port),
    RELAY_LOCAL_SECRETS_PATH: harness.secretsPath,
    RELAY_STATE_STORE: 'memory',
  };
  const runtime = createRuntime(
    { ...loadConfig({ ...base, ...settings }), callers: harness.config.callers },
    harness.secrets,
  );
  runtimes.push(runtime);
  return runtime;
}

async function send(runtime: Runtime) {
  const { context, lines } = capturingContext();
  const response = await bindHttp(sendFunction, runtime)(
    jsonRequest('http://localhost:7071/api/send', message, alertsKey),
    context,
  );
  return { response, body: response.jsonBody as Record<string, unknown>, lines };
}

beforeAll(async () => {
  harness = await startRelayHarness({ storeClientSecret: false });
  managedIdentity = await startManagedIdentityPeer({ issuer: `${harness.identity.authority}/v2.0` });
  vi.stubEnv('IDENTITY_ENDPOINT', managedIdentity.endpoint);
  vi.stubEnv('IDENTITY_HEADER', managedIdentity.header);
});

afterAll(async () => {
  for (const runtime of runtimes) runtime.close();
  vi.unstubAllEnvs();
  await managedIdentity?.close();
  await harness?.close();
});

describe('federated credential (managed identity as the app credential)', () => {
  it('sends end to end with no secret in any store', async () => {
    trustManagedIdentity();
    const { response, body, lines } = await send(freshRuntime());

    expect(response.status, JSON.stringify(body)).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('alerts@contoso.com');
    expect(await harness.secrets.listSecrets()).toEqual([]);
    expect(managedIdentity.requests).toEqual([
      { resource: 'api://AzureADTokenExchange', clientId: managedIdentity.clientId, status: 200 },
    ]);
    expect(harness.identity.tokenRequests.at(-1)).toMatchObject({
      grantType: 'client_credentials',
      status: 200,
      clientAuthentication: 'federated',
      federatedIdentity: { issuer: managedIdentity.issuer, subject: managedIdentity.principalId },
    });
    expect(lines.join('\n')).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });

  it('explains an app registration that trusts another identity', async () => {
    trustManagedIdentity('00000000-0000-0000-0000-00000000dead');
    const { response, body } = await send(freshRuntime());

    expect(response.status).toBe(502);
    const error = body.error as { code: string; message: string; remedy: string; details: unknown };
    expect(error.code).toBe('federated_credential_invalid');
    expect(error.message).toContain('AADSTS700213');
    expect(error.remedy).toContain('subject');
    expect(harness.identity.tokenRequests.at(-1)).toMatchObject({ status: 401 });
  });

  it('names the managed identity when its client id is wrong, and never falls back to a secret', async () => {
    trustManagedIdentity();
    await harness.secrets.setSecret('relay-client-secret', appClientSecret);
    const before = harness.identity.tokenRequests.length;
    const { response, body } = await send(
      freshRuntime({ RELAY_MANAGED_IDENTITY_CLIENT_ID: '99999999-9999-9999-9999-999999999999' }),
    );
    await harness.secrets.deleteSecret('relay-client-secret');

    expect(response.status).toBe(502);
    const error = body.error as { code: string; message: string; remedy: string };
    expect(error.code).toBe('managed_identity_failed');
    expect(error.message).toContain('99999999-9999-9999-9999-999999999999');
    expect(error.remedy).toContain('RELAY_MANAGED_IDENTITY_CLIENT_ID');
    expect(managedIdentity.requests.at(-1)).toMatchObject({ status: 400 });
    expect(harness.identity.tokenRequests.length).toBe(before);
  });

  it('reports no expiring secret in the status, since none exists', async () => {
    const runtime = freshRuntime();
    expect(await describeCredentialExpiry(runtime.config.identity, harness.secrets)).toEqual({
      type: 'federated',
    });
  });
});

describe("a federated app's delegated mailboxes", () => {
  const mailbox = 'shared@contoso.com';
  const delegatedSettings = { RELAY_MAILBOXES: JSON.stringify([{ address: mailbox, mode: 'delegated' }]) };
  /** What Entra answers when the managed identity's token has expired by the time it is presented. */
  const assertionExpired = {
    status: 401,
    error: 'invalid_client',
    error_description: 'AADSTS700024: Client assertion is not within its valid time range.',
    error_codes: [700024],
  };

  /** Opens the consent URL, signs in as the mailbox on the identity peer's page, and completes the callback. */
  const connect = (runtime: Runtime) => completeConsent(runtime, mailbox);

  it('blames the federated credential when Entra refuses it while redeeming the sign-in code', async () => {
    trustManagedIdentity();
    harness.identity.registerUser({ username: mailbox });
    const runtime = freshRuntime(delegatedSettings);
    harness.identity.failNext(assertionExpired);

    const outcome = await connect(runtime);

    expect(outcome).toMatchObject({
      kind: 'exchange_failed',
      failure: { code: 'federated_credential_invalid', details: { aadsts: 'AADSTS700024' } },
    });
    expect(harness.identity.tokenRequests.at(-1)).toMatchObject({
      grantType: 'authorization_code',
      status: 401,
    });
  });

  it('blames the federated credential when Entra refuses it on a delegated refresh', async () => {
    trustManagedIdentity();
    harness.identity.registerUser({ username: mailbox });
    const runtime = freshRuntime(delegatedSettings);
    expect(await connect(runtime)).toMatchObject({ kind: 'connected' });

    harness.identity.failNext(assertionExpired);
    const expired = await runtime.maintenance.refreshAll();
    // The app registration stops trusting the identity: Entra's own answer, from the peer's checks.
    trustManagedIdentity('00000000-0000-0000-0000-00000000dead');
    const untrusted = await runtime.maintenance.refreshAll();

    expect(expired.mailboxes).toEqual([
      {
        mailbox,
        ok: false,
        code: 'federated_credential_invalid',
        aadsts: 'AADSTS700024',
        needsConsent: false,
      },
    ]);
    expect(untrusted.mailboxes).toEqual([
      {
        mailbox,
        ok: false,
        code: 'federated_credential_invalid',
        aadsts: 'AADSTS700213',
        needsConsent: false,
      },
    ]);
    expect(harness.identity.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', status: 401 });
  });
});
