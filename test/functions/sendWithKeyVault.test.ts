import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send as sendFunction } from '../../functions/send.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import type { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { openCachedKeyVaultStore } from '../support/keyVaultStore.ts';
import {
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

let harness: RelayHarness;
let vault: KeyVaultPeer;
let runtime: Runtime;
let secrets: ReturnType<typeof createCachedSecretStore>;
let clock = Date.now();

beforeAll(async () => {
  harness = await startRelayHarness({ storeClientSecret: false });
  vault = await startKeyVaultPeer({ authority: harness.identity.authority });
  vault.putSecretDirect('relay-client-secret', appClientSecret, { contentType: 'text/plain' });
  secrets = await openCachedKeyVaultStore(vault, { now: () => clock });
  runtime = createRuntime(harness.config, secrets);
});

afterAll(async () => {
  runtime?.close();
  await vault?.close();
  await harness?.close();
});

describe('sending with the client secret in Key Vault', () => {
  it('reads the secret once, then sends without touching the vault', async () => {
    const handler = bindHttp(sendFunction, runtime);
    const send = (index: number) =>
      handler(
        jsonRequest(
          'http://localhost:7071/api/send',
          { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: `kv ${index}`, text: 'x' },
          { 'x-relay-key': 'caller-key-alerts-0123456789' },
        ),
        capturingContext().context,
      );
    expect((await send(0)).status).toBe(200);
    const readsAfterFirstSend = vault.countOperations('get');
    expect(readsAfterFirstSend).toBe(1);
    const responses = await Promise.all(Array.from({ length: 30 }, (_, index) => send(index + 1)));
    expect(responses.every((response) => response.status === 200)).toBe(true);
    expect(vault.countOperations('get')).toBe(readsAfterFirstSend);
    expect(await harness.smtp.waitForMessages(31)).toHaveLength(31);
  });

  it('keeps sending on the last good secret while the vault throttles its background re-read', async () => {
    const readsBefore = vault.requests.length;
    // Past the cache TTL: the send must not wait for the vault, which answers 429 to everything now.
    clock += 301_000;
    vault.failNext({ status: 429, retryAfterSeconds: 0, times: 20 });
    // A new instance's token cache is empty, so this send needs the client secret again.
    const restarted = createRuntime(harness.config, secrets);
    const response = await bindHttp(sendFunction, restarted)(
      jsonRequest(
        'http://localhost:7071/api/send',
        { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: 'during throttling', text: 'x' },
        { 'x-relay-key': 'caller-key-alerts-0123456789' },
      ),
      capturingContext().context,
    );
    restarted.close();
    expect(response.status).toBe(200);
    await expect
      .poll(() => vault.requests.slice(readsBefore).some((request) => request.status === 429))
      .toBe(true);
  });
});
