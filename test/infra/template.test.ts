import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { settingDefaults, settingNames } from '../../shared/config.ts';
import { type BicepFile, closingIndex, outputsOf, paramsOf, readBicep } from './bicepText.ts';

/**
 * The azd template, checked for what the Bicep compiler cannot know. That every file parses, every
 * resource type and property exists in its API version, modules get exactly the parameters they declare,
 * outputs used exist and nothing declared goes unused is proven by the real compiler and linter
 * (npm run check:bicep, part of npm test and CI). Here: the values Flex Consumption requires, the app
 * settings against what the relay reads (shared/config.ts), local.settings.sample.json and docs/deploy.md,
 * the role ids, and main.parameters.json (which the compiler does not read).
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
  // Shared limits (issue 11): Exchange's daily recipient budget, and the storage account every instance shares.
  'RELAY_MAILBOX_RECIPIENTS_PER_DAY',
  'RELAY_STATE_STORE',
  'RELAY_QUEUE_MAX_MESSAGES_PER_CALLER',
  'RELAY_QUEUE_MAX_BYTES_PER_CALLER',
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
  it('maps main.parameters.json onto main.bicep parameters, covering every required one', () => {
    const parameters = JSON.parse(readFileSync(join(infra, 'main.parameters.json'), 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    const declared = paramsOf(main);
    for (const name of Object.keys(parameters.parameters))
      expect(declared.map((param) => param.name)).toContain(name);
    for (const param of declared.filter((entry) => !entry.hasDefault))
      expect(Object.keys(parameters.parameters)).toContain(param.name);
  });

  it('deploys the relay service azure.yaml names as a Flex Consumption Function App on Node 22', () => {
    const azureYaml = readFileSync(join(root, 'azure.yaml'), 'utf8');
    expect(azureYaml).toMatch(/^services:\n {2}relay:\n(?: {4}.+\n)*? {4}host: function$/m);
    expect(relay.text).toContain("'azd-service-name': 'relay'");
    expect(relay.text).toMatch(/tier: 'FlexConsumption'\n\s+name: 'FC1'/);
    expect(relay.text).toMatch(/runtime: \{\n\s+name: 'node'\n\s+version: '22'/);
    // The package is deployed to a blob container the app reads as its identity (no storage keys).
    expect(relay.text).toMatch(
      /storage: \{\n\s+type: 'blobContainer'\n.*\n\s+authentication: \{\n\s+type: 'UserAssignedIdentity'/,
    );
  });

  it('keeps the scale limit within what Flex Consumption accepts (40 to 1000 instances)', () => {
    const limit = /@minValue\((\d+)\)\n@maxValue\((\d+)\)\nparam maximumInstanceCount int = (\d+)$/m.exec(
      main.text,
    );
    expect(limit, 'main.bicep: @minValue @maxValue param maximumInstanceCount int = N').not.toBeNull();
    const [min, max, value] = (limit ?? []).slice(1).map(Number) as [number, number, number];
    expect(min).toBeGreaterThanOrEqual(40);
    expect(max).toBeLessThanOrEqual(1000);
    expect(value).toBeGreaterThanOrEqual(min);
    expect(value).toBeLessThanOrEqual(max);
    expect(relay.text).toMatch(
      /maximumInstanceCount: maximumInstanceCount\n\s+instanceMemoryMB: instanceMemoryMB/,
    );
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

  it('runs the host on identity-based blob, queue and table storage and telemetry, with nothing Flex rejects', () => {
    const set = appSettingsOf(relay);
    expect(set).toEqual(
      expect.arrayContaining([
        'AzureWebJobsStorage__blobServiceUri',
        'AzureWebJobsStorage__queueServiceUri',
        'AzureWebJobsStorage__tableServiceUri',
        'AzureWebJobsStorage__credential',
        'AzureWebJobsStorage__clientId',
        'APPLICATIONINSIGHTS_CONNECTION_STRING',
        'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
      ]),
    );
    expect(set).not.toContain('AzureWebJobsStorage');
    // Flex Consumption takes these from functionAppConfig and refuses them as settings.
    for (const file of bicepFiles)
      for (const name of ['FUNCTIONS_WORKER_RUNTIME', 'FUNCTIONS_EXTENSION_VERSION', 'functionAppScaleLimit'])
        expect(file.code, `${name} in ${file.path}`).not.toMatch(new RegExp(`\\b${name}\\b`));
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
