import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { isDomainWildcard, isMailboxAddress } from './mailAddress.ts';
import { type CredentialType, credentialTypes } from './tokens/credentialKinds.ts';

/**
 * Every setting the relay reads, parsed and validated once at start-up. Nothing else reads process.env.
 * Names start with RELAY_ so they never collide with @azure/identity's own AZURE_* variables.
 * local.settings.sample.json and the README list the same names; test/config.test.ts keeps them in step.
 */

export interface CallerRule {
  /** A label for logs and errors; never the key. */
  name: string;
  /** Hex SHA-256 of the caller's API key (the key itself is never stored). */
  keySha256: string;
  /** Sender addresses this caller may use: exact addresses, `*@domain`, or `*`. */
  senders: string[];
}

/** How the relay gets tokens for a sender mailbox: the app's own identity, or the mailbox's consented sign-in. */
export type MailboxMode = 'app' | 'delegated';

export interface MailboxRule {
  /** Lower-cased; for delegated mailboxes this must be the account's sign-in name (UPN). */
  address: string;
  mode: MailboxMode;
}

export interface RelayConfig {
  identity: {
    tenantId: string | undefined;
    clientId: string | undefined;
    authorityHost: string;
    credentialType: CredentialType;
    clientSecretName: string;
    clientCertificateName: string;
    /** Client id of the user-assigned managed identity; undefined means the system-assigned identity. */
    managedIdentityClientId: string | undefined;
    /** Audience of the managed-identity token used as the federated client assertion. */
    federatedTokenAudience: string;
    /** Entra refuses tokens that are about to expire at Exchange's endpoint: renew this long before. */
    expiryMarginSeconds: number;
  };
  secrets: {
    keyVaultUrl: string | undefined;
    localSecretsPath: string;
    cacheSeconds: number;
  };
  smtp: {
    host: string;
    port: number;
    scope: string;
    /** Extra trusted CA certificates (PEM) for networks that inspect TLS. */
    extraCaPem: string | undefined;
    maxConnectionsPerMailbox: number;
    timeoutSeconds: number;
  };
  limits: {
    maxMessageBytes: number;
    maxRecipients: number;
  };
  callers: CallerRule[];
  /** Mailboxes with a declared mode; any other sender is sent app-only (the relay's original behaviour). */
  mailboxes: MailboxRule[];
  delegated: {
    /** Where browsers reach the function app; the OAuth redirect URI is derived from it, never from headers. */
    publicBaseUrl: string;
    /** Delegated SMTP scope (national clouds use their own Exchange resource). */
    scope: string;
    /** NCRONTAB schedule of the tokenRefresh timer. */
    refreshSchedule: string;
  };
  /** Azure Storage (queues, tables, blobs) for queued sending, its status and idempotency keys. */
  storage: {
    connectionString: string;
    /**
     * Identity-based access (as the Functions host reads `<connection>__accountName`): when set, the relay
     * signs in to https://<account>.{queue,blob,table}.core.windows.net with the managed identity and the
     * connection string is not used. The Azure template sets it, since its storage account has no keys.
     */
    accountName: string | undefined;
    /** Client id of the user-assigned identity for storage; empty for the system-assigned identity. */
    identityClientId: string | undefined;
  };
  /** Exchange Online's per-mailbox message rate, enforced before a message reaches SMTP. */
  throttle: {
    messagesPerMinute: number;
    /** How long a synchronous send may wait for a slot before it is answered 429. */
    maxWaitSeconds: number;
  };
  queue: {
    /** SMTP attempts per queued message before it is failed and moved to the poison queue. */
    maxAttempts: number;
    /** First retry delay; doubled on each further attempt (capped at one hour). */
    retryBaseSeconds: number;
  };
}

export const settingDefaults = {
  RELAY_AUTHORITY_HOST: 'https://login.microsoftonline.com',
  RELAY_CREDENTIAL_TYPE: 'secret',
  RELAY_CLIENT_SECRET_NAME: 'relay-client-secret',
  RELAY_CLIENT_CERTIFICATE_NAME: 'relay-client-certificate',
  // Entra's audience for federated identity credentials in the public cloud (US Gov: api://AzureADTokenExchangeUSGov).
  RELAY_FEDERATED_TOKEN_AUDIENCE: 'api://AzureADTokenExchange',
  RELAY_TOKEN_EXPIRY_MARGIN_SECONDS: '300',
  RELAY_LOCAL_SECRETS_PATH: '.data/secrets.json',
  RELAY_SECRET_CACHE_SECONDS: '300',
  RELAY_SMTP_HOST: 'smtp.office365.com',
  RELAY_SMTP_PORT: '587',
  RELAY_SMTP_SCOPE: 'https://outlook.office365.com/.default',
  RELAY_SMTP_MAX_CONNECTIONS: '3',
  RELAY_SMTP_TIMEOUT_SECONDS: '60',
  // Exchange Online's default mailbox send limit is 35 MB (encoded).
  RELAY_MAX_MESSAGE_BYTES: String(35 * 1024 * 1024),
  // Exchange Online's default recipient limit per message.
  RELAY_MAX_RECIPIENTS: '500',
  RELAY_CALLERS: '[]',
  RELAY_MAILBOXES: '[]',
  RELAY_PUBLIC_BASE_URL: 'http://localhost:7071',
  RELAY_DELEGATED_SCOPE: 'https://outlook.office.com/SMTP.Send',
  // Every 6 hours: refresh tokens slide their 90-day lifetime on use, and a revoked grant shows up within hours.
  RELAY_TOKEN_REFRESH_SCHEDULE: '0 0 */6 * * *',
  // Azurite's default ports; in Azure, the storage account's connection string (often AzureWebJobsStorage's).
  RELAY_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
  // Exchange Online accepts 30 messages per minute per mailbox and delays the rest (4.3.2 when pushed on).
  RELAY_MAILBOX_RATE_PER_MINUTE: '30',
  RELAY_RATE_LIMIT_WAIT_SECONDS: '10',
  RELAY_QUEUE_MAX_ATTEMPTS: '5',
  RELAY_QUEUE_RETRY_BASE_SECONDS: '30',
} as const;

/** Every setting name the loader reads, for documentation and drift checks. */
export const settingNames = [
  'RELAY_TENANT_ID',
  'RELAY_CLIENT_ID',
  'RELAY_KEY_VAULT_URL',
  'RELAY_SMTP_EXTRA_CA',
  'RELAY_MANAGED_IDENTITY_CLIENT_ID',
  'RELAY_STORAGE_CONNECTION__accountName',
  'RELAY_STORAGE_CONNECTION__clientId',
  'RELAY_STORAGE_CONNECTION__credential',
  ...Object.keys(settingDefaults),
] as const;

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

const httpsUrl = z
  .url({ protocol: /^https$/, error: 'must be an https:// URL' })
  .transform((url) => url.replace(/\/+$/, ''));

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const callerRule = z.strictObject({
  name: z.string().min(1).max(100),
  keySha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be the hex SHA-256 of the API key (npm run caller-key creates one)')
    .transform((hash) => hash.toLowerCase()),
  senders: z
    .array(
      z
        .string()
        .trim()
        .toLowerCase()
        .refine(
          (sender) => sender === '*' || isDomainWildcard(sender) || isMailboxAddress(sender),
          'must be an address, *@domain or *',
        ),
    )
    .min(1),
});

const mailboxRule = z.strictObject({
  address: z.string().trim().toLowerCase().refine(isMailboxAddress, 'must be a mailbox address'),
  mode: z.enum(['app', 'delegated']),
});

function jsonSetting<T extends z.ZodType>(schema: T) {
  return z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
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

const settingsSchema = z.object({
  RELAY_TENANT_ID: optionalText,
  RELAY_CLIENT_ID: optionalText,
  RELAY_AUTHORITY_HOST: httpsUrl,
  RELAY_CREDENTIAL_TYPE: z.enum(credentialTypes),
  RELAY_CLIENT_SECRET_NAME: z.string().regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name'),
  RELAY_CLIENT_CERTIFICATE_NAME: z.string().regex(/^[0-9a-zA-Z-]{1,127}$/, 'must be a Key Vault secret name'),
  RELAY_MANAGED_IDENTITY_CLIENT_ID: optionalText,
  RELAY_FEDERATED_TOKEN_AUDIENCE: z.string().trim().min(1),
  RELAY_TOKEN_EXPIRY_MARGIN_SECONDS: integer(0, 3000),
  RELAY_KEY_VAULT_URL: z
    .string()
    .trim()
    .transform((value) => (value === '' ? undefined : value))
    .pipe(httpsUrl.optional())
    .optional(),
  RELAY_LOCAL_SECRETS_PATH: z.string().min(1),
  RELAY_SECRET_CACHE_SECONDS: integer(0, 86_400),
  RELAY_SMTP_HOST: z.string().trim().min(1),
  RELAY_SMTP_PORT: integer(1, 65_535),
  RELAY_SMTP_SCOPE: z.string().trim().min(1),
  RELAY_SMTP_EXTRA_CA: optionalText,
  // Exchange Online allows 3 concurrent SMTP AUTH connections per mailbox (432 4.3.2 beyond that).
  RELAY_SMTP_MAX_CONNECTIONS: integer(1, 3),
  RELAY_SMTP_TIMEOUT_SECONDS: integer(5, 600),
  RELAY_MAX_MESSAGE_BYTES: integer(1024, 157_286_400),
  RELAY_MAX_RECIPIENTS: integer(1, 1000),
  RELAY_CALLERS: jsonSetting(z.array(callerRule)),
  RELAY_MAILBOXES: jsonSetting(
    z.array(mailboxRule).refine((rules) => new Set(rules.map((rule) => rule.address)).size === rules.length, {
      message: 'lists a mailbox twice',
    }),
  ),
  RELAY_PUBLIC_BASE_URL: publicBaseUrl,
  RELAY_DELEGATED_SCOPE: z.string().trim().min(1),
  // NCRONTAB as Azure Functions reads it: six fields, seconds first.
  RELAY_TOKEN_REFRESH_SCHEDULE: z
    .string()
    .trim()
    .regex(/^\S+( \S+){5}$/, 'must be a six-field NCRONTAB expression, e.g. 0 0 */6 * * *'),
  // Names follow the Functions host's identity-based connection convention, so host and relay share them.
  RELAY_STORAGE_CONNECTION__accountName: optionalText.pipe(
    z
      .string()
      .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name')
      .optional(),
  ),
  RELAY_STORAGE_CONNECTION__clientId: optionalText,
  RELAY_STORAGE_CONNECTION__credential: optionalText.pipe(
    z
      .literal('managedidentity', {
        error: 'must be managedidentity (the only identity the host supports here)',
      })
      .optional(),
  ),
  RELAY_STORAGE_CONNECTION: z
    .string()
    .trim()
    .regex(
      /^UseDevelopmentStorage=true$|AccountName=|Endpoint=/i,
      'must be a storage connection string (UseDevelopmentStorage=true locally)',
    ),
  RELAY_MAILBOX_RATE_PER_MINUTE: integer(1, 100_000),
  RELAY_RATE_LIMIT_WAIT_SECONDS: integer(0, 120),
  RELAY_QUEUE_MAX_ATTEMPTS: integer(1, 50),
  RELAY_QUEUE_RETRY_BASE_SECONDS: integer(0, 3600),
});

function readExtraCa(value: string | undefined, problems: string[]): string | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith('-----BEGIN CERTIFICATE-----')) return value;
  try {
    const pem = readFileSync(value, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----'))
      problems.push(`RELAY_SMTP_EXTRA_CA: ${value} holds no PEM certificate`);
    return pem;
  } catch {
    problems.push(
      `RELAY_SMTP_EXTRA_CA: cannot read the file ${value} (give a PEM file path or the PEM text)`,
    );
    return undefined;
  }
}

export function loadConfig(env: Record<string, string | undefined>): RelayConfig {
  const withDefaults: Record<string, string | undefined> = { ...settingDefaults };
  for (const name of settingNames) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') withDefaults[name] = value;
  }
  const parsed = settingsSchema.safeParse(withDefaults);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const [setting, ...rest] = issue.path;
        const where = rest.length > 0 ? `${String(setting)} at ${rest.join('.')}` : String(setting);
        return `${where}: ${issue.message}`;
      }),
    );
  }
  const settings = parsed.data;
  const problems: string[] = [];
  const extraCaPem = readExtraCa(settings.RELAY_SMTP_EXTRA_CA, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    identity: {
      tenantId: settings.RELAY_TENANT_ID,
      clientId: settings.RELAY_CLIENT_ID,
      authorityHost: settings.RELAY_AUTHORITY_HOST,
      credentialType: settings.RELAY_CREDENTIAL_TYPE,
      clientSecretName: settings.RELAY_CLIENT_SECRET_NAME,
      clientCertificateName: settings.RELAY_CLIENT_CERTIFICATE_NAME,
      managedIdentityClientId: settings.RELAY_MANAGED_IDENTITY_CLIENT_ID,
      federatedTokenAudience: settings.RELAY_FEDERATED_TOKEN_AUDIENCE,
      expiryMarginSeconds: settings.RELAY_TOKEN_EXPIRY_MARGIN_SECONDS,
    },
    secrets: {
      keyVaultUrl: settings.RELAY_KEY_VAULT_URL,
      localSecretsPath: settings.RELAY_LOCAL_SECRETS_PATH,
      cacheSeconds: settings.RELAY_SECRET_CACHE_SECONDS,
    },
    smtp: {
      host: settings.RELAY_SMTP_HOST,
      port: settings.RELAY_SMTP_PORT,
      scope: settings.RELAY_SMTP_SCOPE,
      extraCaPem,
      maxConnectionsPerMailbox: settings.RELAY_SMTP_MAX_CONNECTIONS,
      timeoutSeconds: settings.RELAY_SMTP_TIMEOUT_SECONDS,
    },
    limits: {
      maxMessageBytes: settings.RELAY_MAX_MESSAGE_BYTES,
      maxRecipients: settings.RELAY_MAX_RECIPIENTS,
    },
    callers: settings.RELAY_CALLERS,
    mailboxes: settings.RELAY_MAILBOXES,
    delegated: {
      publicBaseUrl: settings.RELAY_PUBLIC_BASE_URL,
      scope: settings.RELAY_DELEGATED_SCOPE,
      refreshSchedule: settings.RELAY_TOKEN_REFRESH_SCHEDULE,
    },
    storage: {
      connectionString: settings.RELAY_STORAGE_CONNECTION,
      accountName: settings.RELAY_STORAGE_CONNECTION__accountName,
      identityClientId: settings.RELAY_STORAGE_CONNECTION__clientId,
    },
    throttle: {
      messagesPerMinute: settings.RELAY_MAILBOX_RATE_PER_MINUTE,
      maxWaitSeconds: settings.RELAY_RATE_LIMIT_WAIT_SECONDS,
    },
    queue: {
      maxAttempts: settings.RELAY_QUEUE_MAX_ATTEMPTS,
      retryBaseSeconds: settings.RELAY_QUEUE_RETRY_BASE_SECONDS,
    },
  };
}
