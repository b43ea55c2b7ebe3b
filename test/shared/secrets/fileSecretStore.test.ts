import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createFileSecretStore } from '../../../shared/secrets/fileSecretStore.ts';
import { describeSecretStoreContract } from './secretStoreContract.ts';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'file-store-'));
});

describeSecretStoreContract('file', () => createFileSecretStore(join(directory, 'contract', 'secrets.json')));

describe('file secret store', () => {
  it('creates its file on first use, readable only by the owner', async () => {
    const path = join(directory, 'fresh', 'nested', 'secrets.json');
    await createFileSecretStore(path).setSecret('relay-client-secret', 'value');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(dirname(path))).mode & 0o777).toBe(0o700);
  });

  it('loses no write when many happen at once', async () => {
    const store = createFileSecretStore(join(directory, 'concurrent', 'secrets.json'));
    await Promise.all(
      Array.from({ length: 25 }, (_, index) => store.setSecret(`secret-${index}`, `value-${index}`)),
    );
    expect((await store.listSecrets()).map((secret) => secret.name).sort()).toHaveLength(25);
  });

  it('refuses names Key Vault would refuse, so names move between stores', async () => {
    const store = createFileSecretStore(join(directory, 'names', 'secrets.json'));
    await expect(store.setSecret('alerts@contoso.com', 'v')).rejects.toMatchObject({
      code: 'secret_name_invalid',
    });
  });

  it('reports a corrupt file with the setting to fix', async () => {
    const path = join(directory, 'corrupt.json');
    await writeFile(path, '{ not json');
    await expect(createFileSecretStore(path).getSecret('x')).rejects.toMatchObject({
      code: 'secret_store_corrupt',
      remedy: expect.stringContaining('RELAY_LOCAL_SECRETS_PATH'),
    });
    expect(await readFile(path, 'utf8')).toBe('{ not json');
  });
});
