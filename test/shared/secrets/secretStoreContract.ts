import { describe, expect, it } from 'vitest';
import type { SecretStore } from '../../../shared/secrets/secretStore.ts';

/**
 * What every SecretStore must do, run against the file store and against the Key Vault store talking to
 * the loopback vault through the real SecretClient.
 */
export function describeSecretStoreContract(label: string, openStore: () => SecretStore): void {
  describe(`${label} secret store contract`, () => {
    it('returns undefined for a secret that does not exist', async () => {
      expect(await openStore().getSecret('never-stored')).toBeUndefined();
    });

    it('stores a value with tags and content type and reads it back', async () => {
      const store = openStore();
      const expiresOn = new Date(Date.now() + 90 * 86_400_000);
      await store.setSecret('relay-client-secret', 's3cr3t-value', {
        tags: { mailbox: 'alerts@contoso.com' },
        contentType: 'text/plain',
        expiresOn,
      });
      const secret = await store.getSecret('relay-client-secret');
      expect(secret).toMatchObject({
        name: 'relay-client-secret',
        value: 's3cr3t-value',
        tags: { mailbox: 'alerts@contoso.com' },
        contentType: 'text/plain',
      });
      expect(Math.abs((secret?.expiresOn?.getTime() ?? 0) - expiresOn.getTime())).toBeLessThan(1000);
    });

    it('replaces a value with a newer one', async () => {
      const store = openStore();
      await store.setSecret('rotating', 'first');
      await store.setSecret('rotating', 'second');
      expect((await store.getSecret('rotating'))?.value).toBe('second');
    });

    it('lists stored secrets without their values', async () => {
      const store = openStore();
      await store.setSecret('listed-one', 'v1', { tags: { purpose: 'test' } });
      const listed = await store.listSecrets();
      const entry = listed.find((secret) => secret.name === 'listed-one');
      expect(entry).toMatchObject({ name: 'listed-one', tags: { purpose: 'test' } });
      expect(entry).not.toHaveProperty('value');
    });

    it('deletes a secret, and deleting a missing one is not an error', async () => {
      const store = openStore();
      await store.setSecret('to-delete', 'gone soon');
      await store.deleteSecret('to-delete');
      expect(await store.getSecret('to-delete')).toBeUndefined();
      await expect(store.deleteSecret('to-delete')).resolves.toBeUndefined();
    });

    it('keeps a value of Key Vault size (25 KB) intact', async () => {
      const store = openStore();
      const value = 'x'.repeat(24_000) + 'ü'.repeat(100);
      await store.setSecret('large-cache', value);
      expect((await store.getSecret('large-cache'))?.value).toBe(value);
    });
  });
}
