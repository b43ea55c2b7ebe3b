import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  allSettings,
  ConfigError,
  loadConfig,
  type Setting,
  settingDefaults,
  settingNames,
} from '../../shared/config.ts';

const sample = JSON.parse(
  readFileSync(new URL('../../local.settings.sample.json', import.meta.url), 'utf8'),
) as {
  Values: Record<string, string>;
};
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The README row a setting's declaration makes; a cell's `|` is escaped as GitHub tables need. */
function readmeRow(declared: Setting): string {
  const defaultCell = declared.default === undefined ? '(none)' : `\`${declared.default}\``;
  return `| \`${declared.name}\` | ${defaultCell} | ${declared.description.replaceAll('|', '\\|')} |`;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('starts on embedded defaults with no settings at all', () => {
    const config = loadConfig({});
    expect(config.smtp).toMatchObject({ host: 'smtp.office365.com', port: 587, maxConnectionsPerMailbox: 3 });
    expect(config.smtp.scope).toBe('https://outlook.office365.com/.default');
    expect(config.identity.authorityHost).toBe('https://login.microsoftonline.com');
    expect(config.secrets.keyVaultUrl).toBeUndefined();
    expect(config.callers).toEqual([]);
  });

  it('loads the sample settings file as it is', () => {
    expect(() => loadConfig(sample.Values)).not.toThrow();
  });

  it('documents every setting in the README with its declared default and description, and nothing else', () => {
    const readmeRows = readme.split('\n').filter((line) => line.startsWith('| `RELAY_'));
    // On failure, the expected rows are the README's settings table to paste.
    expect(readmeRows.join('\n')).toBe(allSettings.map(readmeRow).join('\n'));
  });

  it('lists every setting in local.settings.sample.json with its default, and nothing else', () => {
    const sampleRelaySettings = Object.keys(sample.Values).filter((name) => name.startsWith('RELAY_'));
    expect(new Set(sampleRelaySettings)).toEqual(new Set(settingNames));
    for (const [name, value] of Object.entries(settingDefaults))
      expect(sample.Values[name], name).toBe(value);
  });

  it('declares each setting once, under a RELAY_ name that @azure/identity does not read itself', () => {
    expect(new Set(settingNames).size).toBe(settingNames.length);
    for (const name of settingNames) expect(name).toMatch(/^RELAY_[A-Z0-9_]+(__[a-zA-Z]+)?$/);
  });

  it('names each bad setting and why', () => {
    const problems = problemsOf({
      RELAY_SMTP_PORT: 'smtp',
      RELAY_AUTHORITY_HOST: 'http://login.example',
      RELAY_SMTP_MAX_CONNECTIONS: '5',
      RELAY_CALLERS: '{not json',
    });
    expect(problems.join('\n')).toMatch(/RELAY_SMTP_PORT/);
    expect(problems.join('\n')).toMatch(/RELAY_AUTHORITY_HOST: must be an https:\/\/ URL/);
    expect(problems.join('\n')).toMatch(/RELAY_SMTP_MAX_CONNECTIONS/);
    expect(problems.join('\n')).toMatch(/RELAY_CALLERS: must be a JSON array/);
  });

  it('points at the exact caller rule that is wrong', () => {
    const problems = problemsOf({
      RELAY_CALLERS: JSON.stringify([
        { name: 'billing', keySha256: 'abc', senders: ['billing@contoso.com'] },
      ]),
    });
    expect(problems).toEqual([
      expect.stringMatching(/^RELAY_CALLERS at 0\.keySha256: must be the hex SHA-256/),
    ]);
  });

  it('refuses two callers with the same name, compared case-insensitively, naming both', () => {
    const problems = problemsOf({
      RELAY_CALLERS: JSON.stringify([
        { name: 'alerts-app', keySha256: 'a'.repeat(64), senders: ['alerts@contoso.com'] },
        { name: 'billing-app', keySha256: 'b'.repeat(64), senders: ['billing@contoso.com'] },
        { name: 'Alerts-App', keySha256: 'c'.repeat(64), senders: ['ops@contoso.com'] },
      ]),
    });
    expect(problems).toEqual([
      'RELAY_CALLERS at 2.name: "Alerts-App" is the name of caller 0 ("alerts-app") too (names compare case-insensitively); each caller needs its own name, since its send status and Idempotency-Keys are kept under it',
    ]);
  });

  it('refuses two callers with the same keySha256, since the first listed would always be the one matched', () => {
    const problems = problemsOf({
      RELAY_CALLERS: JSON.stringify([
        { name: 'alerts-app', keySha256: 'a'.repeat(64), senders: ['alerts@contoso.com'] },
        { name: 'billing-app', keySha256: 'A'.repeat(64), senders: ['billing@contoso.com'] },
      ]),
    });
    expect(problems).toEqual([
      'RELAY_CALLERS at 1.keySha256: "billing-app" has the keySha256 of caller 0 ("alerts-app"); each caller needs its own API key (npm run caller-key creates one), else the first listed is always the one matched',
    ]);
  });

  it('refuses the multi-tenant aliases for RELAY_TENANT_ID, asking for the tenant id or a domain', () => {
    for (const alias of ['common', 'organizations', 'consumers', 'Common']) {
      const problems = problemsOf({ RELAY_TENANT_ID: alias });
      expect(problems, alias).toHaveLength(1);
      expect(problems[0], alias).toMatch(
        new RegExp(
          `^RELAY_TENANT_ID: "${alias}" signs in accounts of any tenant; the relay needs its tenant's id \\(a GUID`,
        ),
      );
      expect(problems[0], alias).toContain('one of its verified domains');
    }
    expect(problemsOf({ RELAY_TENANT_ID: 'not a tenant' })).toEqual([
      expect.stringMatching(/^RELAY_TENANT_ID: the relay needs its tenant's id \(a GUID/),
    ]);
    for (const accepted of ['72f988bf-86f1-41af-91ab-2d7cd011db47', 'contoso.onmicrosoft.com', 'contoso.com'])
      expect(problemsOf({ RELAY_TENANT_ID: accepted }), accepted).toEqual([]);
  });

  it('takes a sender or mailbox only in the address form a send request accepts', () => {
    const callers = (senders: string[]) =>
      JSON.stringify([{ name: 'app', keySha256: 'a'.repeat(64), senders }]);
    const mailboxes = (address: string) => JSON.stringify([{ address, mode: 'delegated' }]);
    expect(problemsOf({ RELAY_CALLERS: callers(['*', '*@contoso.com', 'Ops@Contoso.com']) })).toEqual([]);
    expect(problemsOf({ RELAY_MAILBOXES: mailboxes('reports@contoso.com') })).toEqual([]);
    // Never a valid from address, so such a rule could never match a message.
    for (const sender of ['ops@localhost', 'a<b@contoso.com', 'ops*@contoso.com', '*@', '*@contoso'])
      expect(problemsOf({ RELAY_CALLERS: callers([sender]) }), sender).toEqual([
        'RELAY_CALLERS at 0.senders.0: must be an address, *@domain or *',
      ]);
    for (const address of ['ops@localhost', '*@contoso.com', 'a,b@contoso.com'])
      expect(problemsOf({ RELAY_MAILBOXES: mailboxes(address) }), address).toEqual([
        'RELAY_MAILBOXES at 0.address: must be a mailbox address',
      ]);
  });

  it('refuses an extra CA file that cannot be read', () => {
    expect(problemsOf({ RELAY_SMTP_EXTRA_CA: '/nonexistent/ca.pem' })).toEqual([
      expect.stringContaining('RELAY_SMTP_EXTRA_CA: cannot read the file /nonexistent/ca.pem'),
    ]);
  });
});
