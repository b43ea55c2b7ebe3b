import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import { createRelayStorage } from '../../../shared/storage/relayStorage.ts';

describe('relay storage clients', () => {
  it('use the connection string locally (Azurite)', () => {
    const storage = createRelayStorage(loadConfig({}).storage);
    expect(storage.sendQueue.url).toBe('http://127.0.0.1:10001/devstoreaccount1/relay-send');
    expect(storage.statuses.url).toBe('http://127.0.0.1:10002/devstoreaccount1');
  });

  it("sign in with the app's identity when the account is named the host's identity-based way", () => {
    const config = loadConfig({
      RELAY_STORAGE_CONNECTION__accountName: 'strelay01',
      RELAY_STORAGE_CONNECTION__credential: 'managedidentity',
      RELAY_STORAGE_CONNECTION__clientId: '00000000-0000-0000-0000-0000000000aa',
    });
    expect(config.storage).toMatchObject({
      accountName: 'strelay01',
      identityClientId: '00000000-0000-0000-0000-0000000000aa',
    });
    let credentialLoads = 0;
    const storage = createRelayStorage(config.storage, async () => {
      credentialLoads += 1;
      return { getToken: async () => null };
    });
    expect(storage.sendQueue.url).toBe('https://strelay01.queue.core.windows.net/relay-send');
    expect(storage.bodies.url).toBe('https://strelay01.blob.core.windows.net/relay-send-bodies');
    expect(storage.idempotencyKeys.url).toBe('https://strelay01.table.core.windows.net');
    // The identity library is loaded on the first storage request, not when the runtime is built.
    expect(credentialLoads).toBe(0);
  });

  it('refuses a credential kind the host would not understand', () => {
    expect(() => loadConfig({ RELAY_STORAGE_CONNECTION__credential: 'secret' })).toThrow(
      /RELAY_STORAGE_CONNECTION__credential: must be managedidentity/,
    );
  });
});
