import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createFileSecretStore } from '../../shared/secrets/fileSecretStore.ts';
import { createTestCertificate } from '../peers/testCertificate.ts';
import {
  appClientId,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

let harness: RelayHarness;
let certificate: { key: string; cert: string };

beforeAll(async () => {
  certificate = await createTestCertificate({ commonName: 'm365-mail-relay' });
  harness = await startRelayHarness({
    settings: { RELAY_CREDENTIAL_TYPE: 'certificate' },
    storeClientSecret: false,
  });
  harness.identity.registerClient({ clientId: appClientId, certificatePem: certificate.cert });
});

afterAll(async () => {
  await harness?.close();
});

describe('certificate credential', () => {
  it('sends with a client certificate read as PEM from the secret store', async () => {
    await harness.secrets.setSecret('relay-client-certificate', `${certificate.key}\n${certificate.cert}`, {
      contentType: 'application/x-pem-file',
    });
    const { context, lines } = capturingContext();
    const response = await bindHttp(send, harness.runtime)(
      jsonRequest(
        'http://localhost:7071/api/send',
        {
          from: 'alerts@contoso.com',
          to: 'ops@contoso.com',
          subject: 'cert',
          text: 'signed in with a certificate',
        },
        { 'x-relay-key': 'caller-key-alerts-0123456789' },
      ),
      context,
    );
    expect(response.status).toBe(200);
    expect(await harness.smtp.waitForMessages(1)).toHaveLength(1);
    expect(harness.identity.tokenRequests.at(-1)).toMatchObject({
      grantType: 'client_credentials',
      status: 200,
    });
    expect(lines.join('\n')).not.toContain('PRIVATE KEY');
  });

  it('explains a PEM without a private key', async () => {
    await harness.secrets.setSecret('relay-client-certificate', certificate.cert);
    harness.runtime.transports.closeAll();
    const { createRuntime } = await import('../../shared/runtime.ts');
    const runtime = createRuntime(harness.config, harness.secrets);
    const { context } = capturingContext();
    const response = await bindHttp(send, runtime)(
      jsonRequest(
        'http://localhost:7071/api/send',
        { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: 'cert', text: 'x' },
        { 'x-relay-key': 'caller-key-alerts-0123456789' },
      ),
      context,
    );
    runtime.close();
    expect(response.status).toBe(500);
    expect((response.jsonBody as { error: { code: string } }).error.code).toBe(
      'client_certificate_unreadable',
    );
  });

  it('uses a certificate rotated in the store as soon as Entra refuses the cached one', async () => {
    const pem = (pair: { key: string; cert: string }) => `${pair.key}\n${pair.cert}`;
    await harness.secrets.setSecret('relay-client-certificate', pem(certificate));
    const before = createRuntime(harness.config, harness.secrets);
    await before.tokens('alerts@contoso.com', { forceRefresh: true });
    before.close();

    // An administrator rotates: Entra knows only the new certificate, and the store holds it, but this
    // process still has the old one cached for RELAY_SECRET_CACHE_SECONDS.
    const rotated = await createTestCertificate({ commonName: 'm365-mail-relay-rotated' });
    harness.identity.registerClient({ clientId: appClientId, certificatePem: rotated.cert });
    await createFileSecretStore(harness.secretsPath).setSecret('relay-client-certificate', pem(rotated));
    const after = createRuntime(harness.config, harness.secrets);
    const token = await after.tokens('alerts@contoso.com', { forceRefresh: true });
    after.close();

    expect(token.accessToken).not.toBe('');
    expect(harness.identity.tokenRequests.slice(-2).map((request) => request.status)).toEqual([401, 200]);
  });
});
