import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { canonicalMailbox, isDomainWildcard, isMailboxAddress } from './mailAddress.ts';
import { senderRouteProblems } from './senderRoutes.ts';
import { credentialTypes, describeCredentialTypes } from './tokens/credentialKinds.ts';

/**
 * Every setting the relay reads, declared once in `relaySettings` below: its name, its default, its parser,
 * the line the README shows, and, by where it sits in the table, its place in the typed RelayConfig.
 * loadConfig parses them all once at start-up and names each bad one; nothing else reads process.env.
 * Names start with RELAY_ so they never collide with @azure/identity's own AZURE_* variables.
 * test/shared/config.test.ts keeps the README's settings table and local.settings.sample.json in step with it.
 */
export interface Setting {
  /** RELAY_..., or RELAY_<connection>__<property> where the Functions host reads the same name. */
  name: string;
  /** Used when the setting is absent or blank; a setting without one parses `undefined` then. */
  default?: string;
  /** From the setting's text to its value in RelayConfig; its messages say what a valid value looks like. */
  parse: z.ZodType;
  /** The README's one line about it (Markdown). */
  description: string;
}

/** Keeps the literal name and whether there is a default, so settingDefaults can be typed by name. */
function setting<const Declared extends Setting>(declared: Declared): Declared {
  return declared;
}

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(`Invalid relay configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const text = z.string().trim().min(1);

const httpsUrl = z
  .url({ protocol: /^https$/, error: 'must be an https:// URL' })
  .transform((url) => url.replace(/\/+$/, ''));

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const keyVaultSecretName = z.string().regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name');

const callerRule = z.strictObject({
  /** A label for logs and errors; never the key. */
  name: z.string().min(1).max(100),
  /** Hex SHA-256 of the caller's API key (the key itself is never stored). */
  keySha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be the hex SHA-256 of the API key (npm run caller-key creates one)')
    .transform((hash) => hash.toLowerCase()),
  /** Sender addresses this caller may use: exact addresses, `*@domain`, or `*`. */
  senders: z
    .array(
      z
        .string()
        .transform(canonicalMailbox)
        .refine(
          (sender) => sender === '*' || isDomainWildcard(sender) || isMailboxAddress(sender),
          'must be an address, *@domain or *',
        ),
    )
    .min(1),
});

export type CallerRule = z.output<typeof callerRule>;

/**
 * A caller's name scopes its send status and its Idempotency-Keys, so two callers of one name (in any case)
 * would read each other's; and callers are matched by key in the order listed, so a second caller with
 * the same key could never be matched.
 */
const callerRules = z.array(callerRule).superRefine((rules, ctx) => {
  const byName = new Map<string, number>();
  const byKey = new Map<string, number>();
  for (const [index, rule] of rules.entries()) {
    const name = rule.name.trim().toLowerCase();
    const sameName = byName.get(name);
    if (sameName === undefined) byName.set(name, index);
    else
      ctx.addIssue({
        code: 'custom',
        path: [index, 'name'],
        message: `"${rule.name}" is the name of caller ${sameName} ("${rules[sameName]?.name}") too (names compare case-insensitively); each caller needs its own name, since its send status and Idempotency-Keys are kept under it`,
      });
    const sameKey = byKey.get(rule.keySha256);
    if (sameKey === undefined) byKey.set(rule.keySha256, index);
    else
      ctx.addIssue({
        code: 'custom',
        path: [index, 'keySha256'],
        message: `"${rule.name}" has the keySha256 of caller ${sameKey} ("${rules[sameKey]?.name}"); each caller needs its own API key (npm run caller-key creates one), else the first listed is always the one matched`,
      });
  }
});

/** How the relay gets tokens for a sender mailbox: the app's own identity, or the mailbox's consented sign-in. */
const mailboxMode = z.enum(['app', 'delegated']);

export type MailboxMode = z.output<typeof mailboxMode>;

const mailboxRule = z.strictObject({
  /** Lower-cased; for delegated mailboxes this must be the account's sign-in name (UPN). */
  address: z.string().transform(canonicalMailbox).refine(isMailboxAddress, 'must be a mailbox address'),
  mode: mailboxMode,
});

export type MailboxRule = z.output<typeof mailboxRule>;

/**
 * How a signed-in mailbox sends as a From address: itself (no route), with Send As, or Send on Behalf
 * (shared/senderRoutes.ts). A route names one of the last two.
 */
export const senderRelations = ['self', 'sendAs', 'sendOnBehalf'] as const;

const senderRouteRule = z.strictObject({
  /** The From address recipients see: an exact address or `*@domain`, lower-cased. */
  from: z
    .string()
    .transform(canonicalMailbox)
    .refine((from) => isDomainWildcard(from) || isMailboxAddress(from), 'must be an address or *@domain'),
  /** The mailboxes that sign in for it (a pool when several); each must be listed in RELAY_MAILBOXES. */
  signIn: z
    .array(z.string().transform(canonicalMailbox).refine(isMailboxAddress, 'must be a mailbox address'))
    .min(1)
    .max(50)
    .refine((mailboxes) => new Set(mailboxes).size === mailboxes.length, 'names a mailbox twice'),
  /** The Exchange right each sign-in mailbox holds on the From address. */
  relation: z.enum(senderRelations).exclude(['self']),
});

export type SenderRouteRule = z.output<typeof senderRouteRule>;

function jsonSetting<T extends z.ZodType>(schema: T) {
  return z
    .string()
    .transform((json, ctx) => {
      try {
        return JSON.parse(json) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON array' });
        return z.NEVER;
      }
    })
    .pipe(schema);
}

/** https, or http for localhost only (Entra accepts plain-http redirect URIs only for localhost). */
const publicBaseUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http(s):// URL' })
  .refine((value) => {
    const url = new URL(value);
    return url.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  }, 'must be https:// (plain http is allowed for localhost only)')
  .transform((url) => url.replace(/\/+$/, ''));

/** PEM text as it is, or a path to a PEM file, read once at start-up. */
const extraCaPem = optionalText.transform((value, ctx) => {
  if (value === undefined || value.startsWith('-----BEGIN CERTIFICATE-----')) return value;
  try {
    const pem = readFileSync(value, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----'))
      ctx.addIssue({ code: 'custom', message: `${value} holds no PEM certificate` });
    return pem;
  } catch {
    ctx.addIssue({
      code: 'custom',
      message: `cannot read the file ${value} (give a PEM file path or the PEM text)`,
    });
    return z.NEVER;
  }
});

/** A directory (tenant) id. */
const tenantGuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when RELAY_TENANT_ID is the tenant's id rather than one of its domains. */
export function isTenantGuid(tenantId: string): boolean {
  return tenantGuidPattern.test(tenantId);
}

/**
 * Entra's multi-tenant aliases sign in any tenant's (or any personal) account, and client credentials
 * cannot use them at all: the relay works for one tenant, named by its id or one of its verified domains.
 */
const multiTenantAliases = ['common', 'organizations', 'consumers'];
const tenantDomainPattern = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

const tenantId = optionalText.refine(
  (value) =>
    value === undefined ||
    (!multiTenantAliases.includes(value.toLowerCase()) &&
      (isTenantGuid(value) || tenantDomainPattern.test(value))),
  {
    error: (issue) =>
      `${multiTenantAliases.includes(String(issue.input).toLowerCase()) ? `"${String(issue.input)}" signs in accounts of any tenant; ` : ''}the relay needs its tenant's id (a GUID, Entra ID > Overview > Tenant ID) or one of its verified domains (contoso.onmicrosoft.com): app-only tokens and delegated sign-ins are both for that one tenant`,
  },
);

export const relaySettings = {
  identity: {
    tenantId: setting({
      name: 'RELAY_TENANT_ID',
      parse: tenantId,
      description:
        'Directory (tenant) ID of the Entra app registration (a GUID) or a verified domain; not common, organizations or consumers',
    }),
    clientId: setting({
      name: 'RELAY_CLIENT_ID',
      parse: optionalText,
      description: 'Application (client) ID of the Entra app registration',
    }),
    authorityHost: setting({
      name: 'RELAY_AUTHORITY_HOST',
      default: 'https://login.microsoftonline.com',
      parse: httpsUrl,
      description:
        'Entra ID host; `https://login.microsoftonline.us` (US Government), `https://login.partner.microsoftonline.cn` (China)',
    }),
    credentialType: setting({
      name: 'RELAY_CREDENTIAL_TYPE',
      default: 'secret',
      // One value per entry of shared/tokens/credentialKinds.ts, which also describes each.
      parse: z.enum(credentialTypes),
      description: describeCredentialTypes(),
    }),
    clientSecretName: setting({
      name: 'RELAY_CLIENT_SECRET_NAME',
      default: 'relay-client-secret',
      parse: keyVaultSecretName,
      description: 'name of the secret holding the client secret',
    }),
    clientCertificateName: setting({
      name: 'RELAY_CLIENT_CERTIFICATE_NAME',
      default: 'relay-client-certificate',
      parse: keyVaultSecretName,
      description: 'name of the secret holding the PEM key and certificate (the thumbprint is computed)',
    }),
    managedIdentityClientId: setting({
      name: 'RELAY_MANAGED_IDENTITY_CLIENT_ID',
      parse: optionalText,
      description:
        'client id of the user-assigned managed identity used for `federated` and for Key Vault; empty means the system-assigned identity',
    }),
    federatedTokenAudience: setting({
      name: 'RELAY_FEDERATED_TOKEN_AUDIENCE',
      // Entra's audience for federated identity credentials in the public cloud.
      default: 'api://AzureADTokenExchange',
      parse: text,
      description:
        'audience of the federated credential (`api://AzureADTokenExchangeUSGov`, `api://AzureADTokenExchangeChina` in national clouds)',
    }),
    // Entra refuses tokens that are about to expire at Exchange's endpoint: renew this long before.
    expiryMarginSeconds: setting({
      name: 'RELAY_TOKEN_EXPIRY_MARGIN_SECONDS',
      default: '300',
      parse: integer(0, 3000),
      description: 'renew access tokens this long before they expire',
    }),
  },
  secrets: {
    keyVaultUrl: setting({
      name: 'RELAY_KEY_VAULT_URL',
      parse: optionalText.pipe(httpsUrl.optional()),
      description: '`https://<vault>.vault.azure.net`; when empty, the local secret file is used',
    }),
    localSecretsPath: setting({
      name: 'RELAY_LOCAL_SECRETS_PATH',
      default: '.data/secrets.json',
      parse: z.string().min(1),
      description: 'the local secret file (development only; created with mode 0600)',
    }),
    cacheSeconds: setting({
      name: 'RELAY_SECRET_CACHE_SECONDS',
      default: '300',
      parse: integer(0, 86_400),
      description: 'how long secrets are served from memory before a background re-read',
    }),
  },
  smtp: {
    host: setting({
      name: 'RELAY_SMTP_HOST',
      default: 'smtp.office365.com',
      parse: text,
      description: 'SMTP AUTH endpoint; `smtp.office365.us` (GCC High), `smtp.partner.outlook.cn` (China)',
    }),
    port: setting({
      name: 'RELAY_SMTP_PORT',
      default: '587',
      parse: integer(1, 65_535),
      description: 'STARTTLS port',
    }),
    scope: setting({
      name: 'RELAY_SMTP_SCOPE',
      default: 'https://outlook.office365.com/.default',
      parse: text,
      description: 'app-only token scope; national clouds use their Exchange resource',
    }),
    extraCaPem: setting({
      name: 'RELAY_SMTP_EXTRA_CA',
      parse: extraCaPem,
      description: 'extra trusted CA (PEM text or file path) for networks that inspect TLS',
    }),
    maxConnectionsPerMailbox: setting({
      name: 'RELAY_SMTP_MAX_CONNECTIONS',
      default: '3',
      // Exchange Online allows 3 concurrent SMTP AUTH connections per mailbox (432 4.3.2 beyond that).
      parse: integer(1, 3),
      description: 'SMTP sessions per signed-in mailbox, over all instances (Exchange Online allows 3)',
    }),
    timeoutSeconds: setting({
      name: 'RELAY_SMTP_TIMEOUT_SECONDS',
      default: '60',
      parse: integer(5, 600),
      description: 'connect, greeting and socket timeout',
    }),
  },
  limits: {
    maxMessageBytes: setting({
      name: 'RELAY_MAX_MESSAGE_BYTES',
      // Exchange Online's default mailbox send limit is 35 MB (encoded).
      default: String(35 * 1024 * 1024),
      parse: integer(1024, 157_286_400),
      description: "largest encoded message accepted (Exchange's default 35 MB)",
    }),
    maxRecipients: setting({
      name: 'RELAY_MAX_RECIPIENTS',
      // Exchange Online's default recipient limit per message.
      default: '500',
      parse: integer(1, 1000),
      description: 'most recipients (to + cc + bcc) per message',
    }),
  },
  callers: setting({
    name: 'RELAY_CALLERS',
    default: '[]',
    parse: jsonSetting(callerRules),
    description: 'JSON array of `{ "name", "keySha256", "senders": [...] }`',
  }),
  // Mailboxes with a declared mode; any other sender is sent app-only (the relay's original behaviour).
  mailboxes: setting({
    name: 'RELAY_MAILBOXES',
    default: '[]',
    parse: jsonSetting(
      z
        .array(mailboxRule)
        .refine((rules) => new Set(rules.map((rule) => rule.address)).size === rules.length, {
          message: 'lists a mailbox twice',
        }),
    ),
    description:
      'JSON array of `{ "address", "mode": "app" | "delegated" }`; unlisted senders are sent app-only',
  }),
  // Addresses sent through another mailbox's sign-in (Send As, Send on Behalf, pools); see shared/senderRoutes.ts.
  senderRoutes: setting({
    name: 'RELAY_SENDER_ROUTES',
    default: '[]',
    parse: jsonSetting(
      z
        .array(senderRouteRule)
        .refine((rules) => new Set(rules.map((rule) => rule.from)).size === rules.length, {
          message: 'routes an address twice',
        }),
    ),
    description:
      'JSON array of `{ "from": "<address>" or "*@<domain>", "signIn": ["<mailbox>", ...], "relation": "sendAs" | "sendOnBehalf" }`; unrouted senders sign in as themselves',
  }),
  delegated: {
    // The OAuth redirect URI is derived from it, never from request headers.
    publicBaseUrl: setting({
      name: 'RELAY_PUBLIC_BASE_URL',
      default: 'http://localhost:7071',
      parse: publicBaseUrl,
      description:
        'where browsers reach the app; the OAuth redirect URI is `<this>/api/oauth/callback` (https, or http for localhost)',
    }),
    scope: setting({
      name: 'RELAY_DELEGATED_SCOPE',
      default: 'https://outlook.office.com/SMTP.Send',
      parse: text,
      description: 'delegated SMTP scope (national clouds use their Exchange resource)',
    }),
    refreshSchedule: setting({
      name: 'RELAY_TOKEN_REFRESH_SCHEDULE',
      // Every 6 hours: refresh tokens slide their 90-day lifetime on use, and a revoked grant shows up within hours.
      default: '0 0 */6 * * *',
      // NCRONTAB as Azure Functions reads it: six fields, seconds first.
      parse: z
        .string()
        .trim()
        .regex(/^\S+( \S+){5}$/, 'must be a six-field NCRONTAB expression, e.g. 0 0 */6 * * *'),
      description: 'NCRONTAB schedule of the `tokenRefresh` timer',
    }),
  },
  // Azure Storage (queues, tables, blobs) for queued sending, its status and idempotency keys. The names
  // follow the Functions host's identity-based connection convention, so host and relay share them.
  storage: {
    connectionString: setting({
      name: 'RELAY_STORAGE_CONNECTION',
      // Azurite's default ports; in Azure, the storage account's connection string (often AzureWebJobsStorage's).
      default: 'UseDevelopmentStorage=true',
      parse: z
        .string()
        .trim()
        .regex(
          /^UseDevelopmentStorage=true$|AccountName=|Endpoint=/i,
          'must be a storage connection string (UseDevelopmentStorage=true locally)',
        ),
      description:
        "storage account (queues, tables, blobs) for queued sending, send status and idempotency keys; also the queue trigger's `connection`",
    }),
    // When set, the relay signs in to https://<account>.{queue,blob,table}.core.windows.net with the managed
    // identity. The Azure template sets it, since its storage account has no keys.
    accountName: setting({
      name: 'RELAY_STORAGE_CONNECTION__accountName',
      parse: optionalText.pipe(
        z
          .string()
          .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name')
          .optional(),
      ),
      description:
        "identity-based storage (the Functions host's own convention): the relay and the queue trigger sign in to this account with the managed identity; the connection string is then unused",
    }),
    // Read by the Functions host for the queue trigger; checked here so a typo fails at start-up.
    hostCredential: setting({
      name: 'RELAY_STORAGE_CONNECTION__credential',
      parse: optionalText.pipe(
        z
          .literal('managedidentity', {
            error: 'must be managedidentity (the only identity the host supports here)',
          })
          .optional(),
      ),
      description: '`managedidentity` with the above (read by the host)',
    }),
    identityClientId: setting({
      name: 'RELAY_STORAGE_CONNECTION__clientId',
      parse: optionalText,
      description: 'client id of the user-assigned identity for storage; empty for the system-assigned one',
    }),
    // Exchange counts per mailbox over every client, and a sign-in started on one instance may return to
    // another: instances must share this state. Memory is for a relay known to run as one process (a
    // container, a laptop without Azurite).
    stateStore: setting({
      name: 'RELAY_STATE_STORE',
      default: 'storage',
      parse: z.enum(['storage', 'memory']),
      description:
        "`storage`: the per-mailbox limits and the relay's state (pending sign-ins, mailbox health, alerts sent) live in the storage account, shared by every instance; `memory`: this process only, for a relay that runs as exactly one process",
    }),
  },
  // Exchange Online's per-mailbox limits, enforced before a message reaches SMTP, over every instance.
  throttle: {
    messagesPerMinute: setting({
      name: 'RELAY_MAILBOX_RATE_PER_MINUTE',
      // Exchange Online accepts 30 messages per minute per mailbox and delays the rest (4.3.2 when pushed on).
      default: '30',
      parse: integer(1, 100_000),
      description: "messages per minute per signed-in mailbox, over all instances (Exchange Online's limit)",
    }),
    recipientsPerDay: setting({
      name: 'RELAY_MAILBOX_RECIPIENTS_PER_DAY',
      // Exchange Online: 10,000 recipients a rolling day per mailbox, then 554 5.2.0 SubmissionQuotaExceeded.
      default: '10000',
      parse: integer(1, 1_000_000),
      description:
        "recipients per rolling 24 hours per signed-in mailbox, over all instances (Exchange Online's limit)",
    }),
    maxWaitSeconds: setting({
      name: 'RELAY_RATE_LIMIT_WAIT_SECONDS',
      default: '10',
      parse: integer(0, 120),
      description:
        'how long a synchronous send waits for its start (the mailbox at its rate or daily recipients) before `429` + `Retry-After`',
    }),
  },
  queue: {
    maxAttempts: setting({
      name: 'RELAY_QUEUE_MAX_ATTEMPTS',
      default: '5',
      parse: integer(1, 50),
      description: 'SMTP attempts for a queued message before it fails and goes to the poison queue',
    }),
    // Doubled on each further attempt, capped at one hour.
    retryBaseSeconds: setting({
      name: 'RELAY_QUEUE_RETRY_BASE_SECONDS',
      default: '30',
      parse: integer(0, 3600),
      description: 'first retry delay of a queued message; doubles per attempt (±20% jitter, at most 1 h)',
    }),
    maxMessagesPerCaller: setting({
      name: 'RELAY_QUEUE_MAX_MESSAGES_PER_CALLER',
      default: '10000',
      parse: integer(1, 10_000_000),
      description:
        'queued messages one caller may have waiting (not yet sent or failed); beyond it `429 queue_quota_exceeded`',
    }),
    maxBytesPerCaller: setting({
      name: 'RELAY_QUEUE_MAX_BYTES_PER_CALLER',
      default: String(1024 * 1024 * 1024),
      parse: integer(1_000_000, 1024 * 1024 * 1024 * 1024),
      description:
        'body bytes one caller may have waiting on the queue; beyond it `429 queue_quota_exceeded`',
    }),
  },
  // Who hears when a mailbox needs a new sign-in, recovers, or the app's credential is about to expire.
  alerts: {
    // https only: the URL itself is the webhook's secret (Teams workflows and Slack put it in the path).
    webhookUrl: setting({
      name: 'RELAY_ALERT_WEBHOOK_URL',
      parse: optionalText.pipe(z.url({ protocol: /^https$/, error: 'must be an https:// URL' }).optional()),
      description:
        'a Teams workflow or Slack incoming webhook: the relay POSTs `{"text": …}` once per health change (a mailbox needs a sign-in or recovered, the credential expires within 30 days)',
    }),
    email: setting({
      name: 'RELAY_ALERT_EMAIL',
      parse: optionalText.pipe(
        z
          .string()
          .transform(canonicalMailbox)
          .refine(isMailboxAddress, 'must be a mailbox address')
          .optional(),
      ),
      description: 'also mail each alert to this address, sent through a healthy configured mailbox',
    }),
  },
};

/** A table of settings, or a section of one: each leaf is a setting, each key its place in RelayConfig. */
type SettingTable = { readonly [place: string]: Setting | SettingTable };

type ConfigOf<Table> = {
  -readonly [Place in keyof Table]: Table[Place] extends Setting
    ? z.output<Table[Place]['parse']>
    : ConfigOf<Table[Place]>;
};

type SettingsIn<Table> = {
  [Place in keyof Table]: Table[Place] extends Setting ? Table[Place] : SettingsIn<Table[Place]>;
}[keyof Table];

type DeclaredSetting = SettingsIn<typeof relaySettings>;

/** The typed configuration: relaySettings' shape, with each setting's parsed value in its place. */
export type RelayConfig = ConfigOf<typeof relaySettings>;

export type SettingName = DeclaredSetting['name'];

function declaredSettings(table: SettingTable): Setting[] {
  return Object.values(table).flatMap((entry) => (isSetting(entry) ? [entry] : declaredSettings(entry)));
}

function isSetting(entry: Setting | SettingTable): entry is Setting {
  return typeof entry.name === 'string';
}

/** Every setting, in the table's order (the README's too). */
export const allSettings = declaredSettings(relaySettings satisfies SettingTable) as readonly (Setting & {
  name: SettingName;
})[];

/** Every setting name the loader reads, for documentation and drift checks. */
export const settingNames: readonly SettingName[] = allSettings.map((declared) => declared.name);

/** The defaults by setting name, for the settings that have one. */
export const settingDefaults = Object.fromEntries(
  allSettings.flatMap((declared) =>
    declared.default === undefined ? [] : [[declared.name, declared.default]],
  ),
) as { readonly [Declared in Extract<DeclaredSetting, { default: string }> as Declared['name']]: string };

function parseSection(
  table: SettingTable,
  env: Record<string, string | undefined>,
  problems: string[],
): Record<string, unknown> {
  const section: Record<string, unknown> = {};
  for (const [place, entry] of Object.entries(table)) {
    if (!isSetting(entry)) {
      section[place] = parseSection(entry, env, problems);
      continue;
    }
    const given = env[entry.name];
    const parsed = entry.parse.safeParse(given !== undefined && given.trim() !== '' ? given : entry.default);
    if (parsed.success) section[place] = parsed.data;
    else
      for (const issue of parsed.error.issues) {
        const where = issue.path.length > 0 ? `${entry.name} at ${issue.path.join('.')}` : entry.name;
        problems.push(`${where}: ${issue.message}`);
      }
  }
  return section;
}

/** Parses every declared setting from `env` (process.env in the app), or fails naming each bad one. */
export function loadConfig(env: Record<string, string | undefined>): RelayConfig {
  const problems: string[] = [];
  const config = parseSection(relaySettings, env, problems) as Partial<RelayConfig>;
  // Rules that relate two settings, checked once both parsed.
  if (config.senderRoutes !== undefined && config.mailboxes !== undefined)
    problems.push(...senderRouteProblems(config.senderRoutes, config.mailboxes));
  if (problems.length > 0) throw new ConfigError(problems);
  // Each place holds what its setting's parser returned, which is what RelayConfig says it holds.
  return config as RelayConfig;
}
