// npm run secret -- set <name> [--file <path>] [--content-type <type>]   (value from the file or stdin)
// npm run secret -- list
// Stores the app's client secret or certificate where the relay reads it: the Key Vault named by
// RELAY_KEY_VAULT_URL (signed in with DefaultAzureCredential, e.g. `az login`), or else the local secret
// file. Settings come from the environment, then local.settings.json. Values are never printed.
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../shared/config.ts';
import { createSecretStore } from '../shared/secrets/createSecretStore.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { file: { type: 'string' }, 'content-type': { type: 'string' } },
});
const [command, name] = positionals;

const localSettings = existsSync('local.settings.json')
  ? ((JSON.parse(readFileSync('local.settings.json', 'utf8')) as { Values?: Record<string, string> })
      .Values ?? {})
  : {};
const config = loadConfig({ ...localSettings, ...process.env });
const store = await createSecretStore(config.secrets);
const where = config.secrets.keyVaultUrl ?? config.secrets.localSecretsPath;

if (command === 'set' && name !== undefined) {
  const value = (
    values.file === undefined ? readFileSync(0, 'utf8') : readFileSync(values.file, 'utf8')
  ).trim();
  if (value === '') {
    console.error('No value given: pipe it on stdin or name a --file.');
    process.exit(2);
  }
  const contentType =
    values['content-type'] ?? (value.includes('-----BEGIN') ? 'application/x-pem-file' : undefined);
  await store.setSecret(name, value, contentType === undefined ? {} : { contentType });
  console.log(`Stored ${name} (${value.length} characters) in ${where}.`);
} else if (command === 'list') {
  for (const secret of await store.listSecrets()) {
    const expiry = secret.expiresOn === undefined ? '' : ` expires ${secret.expiresOn.toISOString()}`;
    console.log(`${secret.name}${expiry} ${JSON.stringify(secret.tags)}`);
  }
} else {
  console.error('usage: npm run secret -- set <name> [--file <path>] | npm run secret -- list');
  process.exit(2);
}
