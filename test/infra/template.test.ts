import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { settingDefaults, settingNames } from '../../shared/config.ts';
import {
  type BicepFile,
  bracketProblems,
  closingIndex,
  modulesOf,
  outputsOf,
  paramsOf,
  readBicep,
  resourceTypesOf,
} from './bicepText.ts';

/**
 * The azd template, checked as far as a machine without the Bicep CLI allows: every file is well formed,
 * modules and their parameters and outputs line up, and the app settings the template sets match what the
 * relay reads (shared/config.ts), what local.settings.sample.json lists and what docs/deploy.md promises.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));
const infra = join(root, 'infra');

/**
 * Settings the template deliberately leaves to the relay's defaults (docs/deploy.md lists them and how to
 * override them with the additionalAppSettings parameter). Anything else the relay reads must be set.
 */
const leftAtDefaults = [
  'RELAY_TOKEN_EXPIRY_MARGIN_SECONDS',
  'RELAY_SECRET_CACHE_SECONDS',
  'RELAY_SMTP_PORT',
  'RELAY_SMTP_MAX_CONNECTIONS',
  'RELAY_SMTP_TIMEOUT_SECONDS',
  'RELAY_MAX_MESSAGE_BYTES',
  'RELAY_MAX_RECIPIENTS',
  // Delegated mailboxes (issue 3): Exchange Online's public-cloud scope and a refresh every 6 hours.
  'RELAY_DELEGATED_SCOPE',
  'RELAY_TOKEN_REFRESH_SCHEDULE',
  // Queued sending (issue 4): Exchange Online's rate and the retry policy keep their defaults; the
  // connection string is unused because the template names the account for identity-based access.
  'RELAY_STORAGE_CONNECTION',
  'RELAY_MAILBOX_RATE_PER_MINUTE',
  'RELAY_RATE_LIMIT_WAIT_SECONDS',
  'RELAY_QUEUE_MAX_ATTEMPTS',
  'RELAY_QUEUE_RETRY_BASE_SECONDS',
  // Only used without Key Vault; in Azure RELAY_KEY_VAULT_URL is always set.
  'RELAY_LOCAL_SECRETS_PATH',
];

const bicepFiles = readdirSync(infra, { recursive: true, encoding: 'utf8' })
  .filter((file) => file.endsWith('.bicep'))
  .map((file) => readBicep(join(infra, file)));
const main = bicepFiles.find((file) => file.path === join(infra, 'main.bicep')) as BicepFile;
const relay = bicepFiles.find((file) => file.path === join(infra, 'app/relay.bicep')) as BicepFile;

function appSettingsOf(file: BicepFile): string[] {
  const start = /resource appSettings 'config' = \{/.exec(file.text);
  if (start === null) return [];
  const open = start.index + start[0].length - 1;
  const block = file.code.slice(open, closingIndex(file.code, open));
  return [...block.matchAll(/^\s*([A-Za-z][A-Za-z0-9_]*):/gm)]
    .map((match) => match[1] ?? '')
    .filter((name) => name !== 'name' && name !== 'properties');
}

describe('azd template', () => {
  it('has well-formed Bicep files with versioned resource types', () => {
    expect(bicepFiles.map((file) => file.path.slice(infra.length + 1)).sort()).toEqual([
      'app/identity.bicep',
      'app/keyvault.bicep',
      'app/monitoring.bicep',
      'app/rbac.bicep',
      'app/relay.bicep',
      'app/storage.bicep',
      'main.bicep',
    ]);
    for (const file of bicepFiles) {
      expect(bracketProblems(file)).toEqual([]);
      for (const type of resourceTypesOf(file))
        expect(type, file.path).toMatch(/^(Microsoft\.\w+\/[\w/]+@\d{4}-\d{2}-\d{2}(-preview)?|\w+)$/);
    }
  });

  it('uses every parameter each file declares', () => {
    for (const file of bicepFiles) {
      for (const param of paramsOf(file)) {
        const uses = file.code.split(new RegExp(`\\b${param.name}\\b`)).length - 1;
        const usesInStrings = file.text.split(new RegExp(`\\$\\{[^}]*\\b${param.name}\\b`)).length - 1;
        expect(uses + usesInStrings, `${param.name} in ${file.path}`).toBeGreaterThan(1);
      }
    }
  });

  it('passes every module the parameters it declares, and only those; outputs used exist', () => {
    for (const file of bicepFiles) {
      const modules = modulesOf(file);
      for (const module of modules) {
        const target = join(dirname(file.path), module.source);
        expect(existsSync(target), `${module.source} from ${file.path}`).toBe(true);
        const targetFile = readBicep(target);
        const declared = paramsOf(targetFile);
        for (const given of module.params)
          expect(
            declared.map((param) => param.name),
            `${module.symbol}.${given}`,
          ).toContain(given);
        for (const param of declared.filter((entry) => !entry.hasDefault))
          expect(module.params, `${module.symbol} needs ${param.name}`).toContain(param.name);
        const outputs = outputsOf(targetFile);
        for (const match of file.text.matchAll(new RegExp(`\\b${module.symbol}\\.outputs\\.(\\w+)`, 'g')))
          expect(outputs, `${module.symbol}.outputs.${match[1]}`).toContain(match[1]);
      }
    }
  });

  it('maps main.parameters.json onto main.bicep parameters, covering every required one', () => {
    const parameters = JSON.parse(readFileSync(join(infra, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    const declared = paramsOf(main);
    for (const name of Object.keys(parameters.parameters))
      expect(declared.map((param) => param.name)).toContain(name);
    for (const param of declared.filter((entry) => !entry.hasDefault))
      expect(Object.keys(parameters.parameters)).toContain(param.name);
    const abbreviations = JSON.parse(readFileSync(join(infra, 'abbreviations.json'), 'utf8')) as Record<
      string,
      string
    >;
    for (const match of main.text.matchAll(/\babbrs\.(\w+)/g))
      expect(abbreviations).toHaveProperty(match[1] ?? '');
  });

  it('deploys the relay service azure.yaml names as a Function App', () => {
    const azureYaml = readFileSync(join(root, 'azure.yaml'), 'utf8');
    expect(azureYaml).toMatch(/^services:\n {2}relay:\n(?: {4}.+\n)*? {4}host: function$/m);
    expect(relay.text).toContain("'azd-service-name': 'relay'");
    expect(relay.text).toMatch(/tier: 'FlexConsumption'/);
    expect(relay.text).toMatch(/name: 'node'\n\s+version: '22'/);
  });

  it('sets every setting the relay reads, except those deliberately left at their defaults', () => {
    const set = appSettingsOf(relay);
    const relaySettings = set.filter((name) => name.startsWith('RELAY_'));
    // No name the relay does not know (a typo would silently be ignored).
    for (const name of relaySettings) expect(settingNames as readonly string[], name).toContain(name);
    for (const name of settingNames) {
      const isSet = relaySettings.includes(name);
      expect(
        isSet !== leftAtDefaults.includes(name),
        `${name}: set by the template xor left at its default`,
      ).toBe(true);
    }
    // A setting left out must have a default, or the relay would not start.
    for (const name of leftAtDefaults) expect(Object.keys(settingDefaults), name).toContain(name);
  });

  it('agrees with local.settings.sample.json on the setting names', () => {
    const sample = JSON.parse(readFileSync(join(root, 'local.settings.sample.json'), 'utf8')) as {
      Values: Record<string, string>;
    };
    const sampleRelay = Object.keys(sample.Values).filter((name) => name.startsWith('RELAY_'));
    const templateRelay = appSettingsOf(relay).filter((name) => name.startsWith('RELAY_'));
    expect(new Set([...templateRelay, ...leftAtDefaults])).toEqual(new Set(sampleRelay));
  });

  it('runs the host on identity-based storage and telemetry, with no runtime settings Flex rejects', () => {
    const set = appSettingsOf(relay);
    expect(set).toEqual(
      expect.arrayContaining([
        'AzureWebJobsStorage__accountName',
        'AzureWebJobsStorage__credential',
        'AzureWebJobsStorage__clientId',
        'APPLICATIONINSIGHTS_CONNECTION_STRING',
        'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
      ]),
    );
    expect(set).not.toContain('AzureWebJobsStorage');
    expect(set).not.toContain('FUNCTIONS_WORKER_RUNTIME');
    expect(set).not.toContain('FUNCTIONS_EXTENSION_VERSION');
  });

  it('grants the identity the storage, Key Vault and telemetry roles, on an RBAC-only vault', () => {
    const rbac = bicepFiles.find((file) => file.path.endsWith('rbac.bicep'))?.text ?? '';
    for (const role of [
      "storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'",
      "storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
      "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
      "keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'",
      "monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'",
    ])
      expect(rbac).toContain(role);
    const vault = bicepFiles.find((file) => file.path.endsWith('keyvault.bicep'))?.text ?? '';
    expect(vault).toContain('enableRbacAuthorization: true');
  });

  it('outputs the ids docs/deploy.md tells the user to use, and documents the settings left at defaults', () => {
    const deployGuide = readFileSync(join(root, 'docs/deploy.md'), 'utf8');
    const outputs = outputsOf(main);
    // As a shell variable ($NAME) or in the outputs table (`NAME`).
    const mentioned = new Set(
      [...deployGuide.matchAll(/[$`]\{?([A-Z][A-Z0-9_]+)/g)].map((match) => match[1]),
    );
    for (const name of [
      'AZURE_FUNCTION_APP_NAME',
      'AZURE_MANAGED_IDENTITY_PRINCIPAL_ID',
      'FEDERATED_CREDENTIAL_ISSUER',
      'FEDERATED_CREDENTIAL_SUBJECT',
      'FEDERATED_CREDENTIAL_AUDIENCE',
      'AZURE_KEY_VAULT_NAME',
      'RELAY_URL',
    ]) {
      expect(outputs).toContain(name);
      expect(mentioned.has(name), `docs/deploy.md uses ${name}`).toBe(true);
    }
    for (const name of leftAtDefaults) expect(deployGuide, name).toContain(`\`${name}\``);
  });
});
