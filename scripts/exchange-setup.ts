// npm run exchange-setup [-- --classic] [--object-id <id>] [--group <name>] [--scope <name>]
// Prints the Exchange Online PowerShell for the current configuration (shared/setup/exchangeSetup.ts): the
// app's service principal, its scoped right to the app-only mailboxes, the rights RELAY_SENDER_ROUTES needs
// and SMTP AUTH per mailbox. Settings come from local.settings.json's Values with the environment winning,
// as in the development host (devhost/main.ts). It reads no secret and prints none.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { appRoot } from '../shared/api/hostJson.ts';
import { ConfigError, loadConfig, type RelayConfig } from '../shared/config.ts';
import {
  defaultGroupName,
  defaultScopeName,
  exchangeSetupScript,
  objectIdPlaceholder,
} from '../shared/setup/exchangeSetup.ts';

const usage = `usage: npm run exchange-setup -- [--classic] [--object-id <id>] [--group <name>] [--scope <name>]
  --classic          FullAccess per mailbox (needs the Entra SMTP.SendAsApp permission) instead of
                     RBAC for Applications (the default, least privilege)
  --object-id <id>   object id of the Enterprise Application (not the App Registration); without it the
                     script holds the placeholder ${objectIdPlaceholder}
  --group <name>     mail-enabled security group of the app-only mailboxes (default: ${defaultGroupName})
  --scope <name>     management scope over that group (default: ${defaultScopeName})
The PowerShell goes to stdout: npm run --silent exchange-setup > exchange-setup.ps1`;

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function localSettings(): Record<string, string> {
  const path = join(appRoot(), 'local.settings.json');
  if (!existsSync(path)) return {};
  const { Values } = JSON.parse(readFileSync(path, 'utf8')) as { Values?: Record<string, unknown> };
  return Object.fromEntries(Object.entries(Values ?? {}).map(([name, value]) => [name, String(value)]));
}

let values: { classic?: boolean; 'object-id'?: string; group?: string; scope?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      classic: { type: 'boolean' },
      'object-id': { type: 'string' },
      group: { type: 'string' },
      scope: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  fail(`${(error as Error).message}\n${usage}`);
}
if (values.help === true) {
  console.log(usage);
  process.exit(0);
}

let config: RelayConfig;
try {
  config = loadConfig({ ...localSettings(), ...process.env });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  fail(
    `The settings are not valid (local.settings.json Values, the environment winning):\n${error.problems.map((problem) => `  - ${problem}`).join('\n')}`,
  );
}
const clientId = config.identity.clientId;
// local.settings.sample.json holds the all-zero GUID until someone fills in the app registration.
if (clientId === undefined || /^0{8}-0{4}-0{4}-0{4}-0{12}$/.test(clientId)) {
  fail(
    'RELAY_CLIENT_ID is not set (or still the all-zero placeholder): put the Application (client) ID of the app registration in local.settings.json or the environment.',
  );
}

try {
  process.stdout.write(
    exchangeSetupScript(config, {
      classic: values.classic === true,
      servicePrincipalObjectId: values['object-id'],
      groupName: values.group,
      scopeName: values.scope,
    }),
  );
} catch (error) {
  fail(`${(error as Error).message}\n${usage}`);
}
