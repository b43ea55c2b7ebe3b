import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { RelayError } from '../errors.ts';
import {
  type SecretProperties,
  type SecretRecord,
  type SecretStore,
  type SetSecretOptions,
  secretNamePattern,
} from './secretStore.ts';

/**
 * The development store: one JSON file, created on first use with mode 0600 in a 0700 folder. Writes go to
 * a temporary file that is renamed over the old one, so a crash mid-write never loses the last good value.
 */
interface StoredEntry {
  value: string;
  tags: Record<string, string>;
  contentType?: string;
  expiresOn?: string;
  updatedOn: string;
}

interface StoreFile {
  version: 1;
  secrets: Record<string, StoredEntry>;
}

export function createFileSecretStore(path: string): SecretStore {
  let writes: Promise<unknown> = Promise.resolve();

  async function load(): Promise<StoreFile> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, secrets: {} };
      throw error;
    }
    try {
      return JSON.parse(text) as StoreFile;
    } catch {
      throw new RelayError('secret_store_corrupt', {
        message: `The local secret file ${path} is not valid JSON.`,
      });
    }
  }

  async function save(file: StoreFile): Promise<void> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    // Unique per write: two stores over one file in one process must never share a temporary file.
    const temporary = `${path}.${process.pid}.${randomUUID()}.tmp`;
    await writeFile(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, path);
  }

  /** Read-modify-write steps run one at a time so two writers never lose each other's change. */
  function exclusive<T>(step: () => Promise<T>): Promise<T> {
    const next = writes.then(step, step);
    writes = next.catch(() => undefined);
    return next;
  }

  function toProperties(name: string, entry: StoredEntry): SecretProperties {
    return {
      name,
      tags: entry.tags,
      contentType: entry.contentType,
      expiresOn: entry.expiresOn === undefined ? undefined : new Date(entry.expiresOn),
      updatedOn: new Date(entry.updatedOn),
    };
  }

  return {
    kind: 'file',
    async getSecret(name: string): Promise<SecretRecord | undefined> {
      const file = await load();
      const entry = file.secrets[name];
      return entry === undefined ? undefined : { ...toProperties(name, entry), value: entry.value };
    },
    async setSecret(name: string, value: string, options: SetSecretOptions = {}): Promise<void> {
      assertValidName(name);
      await exclusive(async () => {
        const file = await load();
        file.secrets[name] = {
          value,
          tags: options.tags ?? {},
          ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
          ...(options.expiresOn === undefined ? {} : { expiresOn: options.expiresOn.toISOString() }),
          updatedOn: new Date().toISOString(),
        };
        await save(file);
      });
    },
    async listSecrets(): Promise<SecretProperties[]> {
      const file = await load();
      return Object.entries(file.secrets).map(([name, entry]) => toProperties(name, entry));
    },
    deleteSecret(name: string): Promise<void> {
      return exclusive(async () => {
        const file = await load();
        if (!(name in file.secrets)) return;
        delete file.secrets[name];
        await save(file);
      });
    },
  };
}

function assertValidName(name: string): void {
  if (!secretNamePattern.test(name)) {
    throw new RelayError('secret_name_invalid', {
      message: `"${name}" is not a valid secret name (letters, digits and -, at most 127).`,
    });
  }
}
