import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { hashCallerKey } from '../../shared/callers.ts';
import { loadConfig, type RelayConfig } from '../../shared/config.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import { type CachedSecretStore, createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { createFileSecretStore } from '../../shared/secrets/fileSecretStore.ts';
import { type IdentityPeer, startIdentityPeer } from '../peers/identityPeer.ts';
import { type SmtpPeer, type SmtpPeerOptions, startSmtpPeer } from '../peers/smtpPeer.ts';

/**
 * Starts the loopback peers (SMTP server, identity provider) and a relay runtime wired to them exactly as
 * the function app wires itself, with only the settings changed. Tests drive the real handlers with it.
 */
export const appClientId = '11111111-2222-3333-4444-555555555555';
export const appClientSecret = 'app-client-secret-value-never-logged';
export const smtpScope = 'https://outlook.office365.com/.default';
export const delegatedScope = 'https://outlook.office.com/SMTP.Send';

export interface TestCaller {
  name: string;
  apiKey: string;
  senders: string[];
}

export const defaultCallers: TestCaller[] = [
  {
    name: 'alerts-app',
    apiKey: 'caller-key-alerts-0123456789',
    senders: ['alerts@contoso.com', '*@notify.contoso.com'],
  },
  { name: 'billing-app', apiKey: 'caller-key-billing-0123456789', senders: ['billing@contoso.com'] },
];

export interface HarnessOptions {
  settings?: Record<string, string>;
  smtp?: SmtpPeerOptions;
  callers?: TestCaller[];
  /** Store the client secret before starting (default true). */
  storeClientSecret?: boolean;
}

export interface RelayHarness {
  smtp: SmtpPeer;
  identity: IdentityPeer;
  secrets: CachedSecretStore;
  config: RelayConfig;
  /** The application settings the configuration was loaded from, e.g. for a relay in another process. */
  settings: Record<string, string>;
  runtime: Runtime;
  secretsPath: string;
  callers: TestCaller[];
  /** Between tests: no pooled connections (so scripted AUTH replies meet a fresh login), no SMTP records. */
  freshSmtp(): Promise<void>;
  close(): Promise<void>;
}

export async function startRelayHarness(options: HarnessOptions = {}): Promise<RelayHarness> {
  const identity = await startIdentityPeer();
  identity.registerClient({ clientId: appClientId, clientSecret: appClientSecret });
  const smtp = await startSmtpPeer({
    // As Exchange: an app-only token by its scope, a delegated one only for the user it was issued to.
    authorize: (user, accessToken) =>
      identity.isValidAccessToken(accessToken, { scope: smtpScope }) ||
      identity.isValidAccessToken(accessToken, { scope: delegatedScope, username: user }),
    ...options.smtp,
  });
  const callers = options.callers ?? defaultCallers;
  const directory = await mkdtemp(join(tmpdir(), 'relay-test-'));
  const secretsPath = join(directory, 'secrets.json');
  const settings: Record<string, string> = {
    RELAY_TENANT_ID: identity.tenantId,
    RELAY_CLIENT_ID: appClientId,
    RELAY_AUTHORITY_HOST: identity.authorityHost,
    RELAY_SMTP_HOST: 'localhost',
    RELAY_SMTP_PORT: String(smtp.port),
    RELAY_SMTP_TIMEOUT_SECONDS: '10',
    RELAY_LOCAL_SECRETS_PATH: secretsPath,
    // Tests send far more than Exchange's 30 per minute; the rate limit is tested with its own setting.
    RELAY_MAILBOX_RATE_PER_MINUTE: '100000',
    // One relay process per harness and most tests run no Azurite: the limits in memory have the same
    // semantics; the shared ones are tested with several processes (test/durable/sharedLimits.test.ts).
    RELAY_STATE_STORE: 'memory',
    RELAY_CALLERS: JSON.stringify(
      callers.map((caller) => ({
        name: caller.name,
        keySha256: hashCallerKey(caller.apiKey),
        senders: caller.senders,
      })),
    ),
    ...options.settings,
  };
  const config = loadConfig(settings);
  const secrets = createCachedSecretStore(createFileSecretStore(secretsPath), {
    ttlSeconds: config.secrets.cacheSeconds,
  });
  if (options.storeClientSecret ?? true)
    await secrets.setSecret(config.identity.clientSecretName, appClientSecret);
  const runtime = createRuntime(config, secrets);
  return {
    smtp,
    identity,
    secrets,
    config,
    settings,
    runtime,
    secretsPath,
    callers,
    async freshSmtp() {
      await runtime.transports.closeAll();
      await smtp.waitForNoOpenConnections();
      smtp.reset();
    },
    async close() {
      await runtime.close();
      await Promise.all([smtp.close(), identity.close()]);
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export interface CapturedLogs {
  lines: string[];
  context: InvocationContext;
}

/** An InvocationContext whose log output is kept, to assert on what the relay logs (and never logs). */
export function capturingContext(functionName = 'send'): CapturedLogs {
  const lines: string[] = [];
  const context = new InvocationContext({
    invocationId: `test-${Math.random().toString(16).slice(2)}`,
    functionName,
    logHandler: (level, ...args) => lines.push(`${level}: ${args.map(String).join(' ')}`),
  });
  return { lines, context };
}

export function jsonRequest(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  method = 'POST',
): HttpRequest {
  return new HttpRequest({
    method,
    url,
    headers: { 'content-type': 'application/json', ...headers },
    body: { string: typeof body === 'string' ? body : JSON.stringify(body) },
  });
}

/**
 * A POST of a raw MIME message as the Functions host hands it over in HTTP streaming mode: the body a
 * stream of `chunks` (no Content-Length unless a header gives one, like a chunked upload), pulled only as
 * the handler reads it. `pulled` counts the chunks the handler took.
 */
export function rawMimeRequest(
  url: string,
  chunks: ReadonlyArray<string | Uint8Array> | ReadableStream<Uint8Array>,
  headers: Record<string, string> = {},
): { request: HttpRequest; pulled: () => number } {
  let pulled = 0;
  const body =
    chunks instanceof ReadableStream
      ? chunks
      : new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              const chunk = chunks[pulled];
              if (chunk === undefined) {
                controller.close();
                return;
              }
              pulled += 1;
              controller.enqueue(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
            },
            // Nothing is pulled ahead of the reader.
          },
          { highWaterMark: 0 },
        );
  const nativeRequest = new Request(url, {
    method: 'POST',
    headers: { 'content-type': 'message/rfc822', ...headers },
    body,
    duplex: 'half',
  } as RequestInit);
  // `nativeRequest` is @azure/functions' own init for a streamed request (its createStreamRequest).
  const request = new HttpRequest({ nativeRequest } as unknown as ConstructorParameters<
    typeof HttpRequest
  >[0]);
  return { request, pulled: () => pulled };
}
