import { Readable } from 'node:stream';
import functions from '@azure/functions';
import nodemailer, { type SendMailOptions, type Transporter } from 'nodemailer';
import { type DevHost, startDevHost } from '../devhost/devHost.ts';
import { bindHttp, functionApp } from '../functions/register.ts';
import { send } from '../functions/send.ts';
import { hashCallerKey } from '../shared/callers.ts';
import { loadConfig } from '../shared/config.ts';
import { createRuntime, type Runtime } from '../shared/runtime.ts';
import { createCachedSecretStore } from '../shared/secrets/cachedSecretStore.ts';
import { createKeyVaultSecretStore } from '../shared/secrets/keyVaultSecretStore.ts';
import type { MailboxTransport } from '../shared/smtp/mailboxTransports.ts';
import { createHttpClient } from './httpClient.ts';
import { benchRecipient, type MessageFactory, mailboxAddress } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';

/**
 * The sides the benchmark compares. All send through pooled nodemailer transports, one per mailbox with
 * at most 3 connections, to the same SMTP peer. The relay sides go through the real send handler, runtime,
 * token cache (MSAL against the identity peer) and Key Vault store (the real SecretClient against the Key
 * Vault peer): JSON as the host hands it over, raw MIME streamed over HTTP to the development host. The
 * bare sides hand nodemailer a fixed token: a message object, or the same raw MIME as a stream.
 */
export const benchIdentity = {
  clientId: '0b3c5d7e-1f2a-4b6c-8d9e-0a1b2c3d4e5f',
  clientSecret: 'bench-client-secret-value',
  secretName: 'relay-client-secret',
  bareToken: 'bench-fixed-token-for-bare-nodemailer',
  smtpScope: 'https://outlook.office365.com/.default',
};

export interface SendTiming {
  /** From the handler (or sendMail) being called to its answer. */
  latencyMs: number;
  /** The part of latencyMs spent outside nodemailer's sendMail: what the relay adds (unknown for raw MIME). */
  addedMs?: number | undefined;
}

export interface Side {
  name: 'relay' | 'bare' | 'relay raw' | 'bare raw';
  send(index: number, messages: MessageFactory): Promise<SendTiming>;
  close(): void | Promise<void>;
}

export interface SideOptions {
  peers: PeersReady;
  mailboxes: number;
  callers: number;
  connectionsPerMailbox: number;
  /**
   * Give every JSON request its own body string, as separately received requests have (the bare side
   * always gives each message its own attachment buffer, as the relay decodes one per message).
   */
  ownCopies?: boolean;
}

// @azure/functions is CommonJS and Node's named-export detection misses these two classes.
const { HttpRequest, InvocationContext } = functions;
const sendUrl = 'http://localhost:7071/api/send';
const callerKey = (index: number) => `bench-caller-key-${index}-0123456789abcdef`;

/**
 * A body string of its own, as a separately received request has, instead of a rope that shares the
 * template's megabyte. Any string conversion flattens a rope in place, without further garbage.
 */
function ownCopy(text: string): string {
  Number(text);
  return text;
}

function headerIdOf(mail: SendMailOptions): string {
  const headers = mail.headers as Record<string, string> | undefined;
  return headers?.['X-Bench-Id'] ?? '';
}

/**
 * A relay runtime wired to the peers as the function app wires itself: MSAL against the identity peer, the
 * client secret from the Key Vault peer through the real SecretClient, SMTP to the SMTP peer.
 */
export async function createBenchRuntime(
  peers: PeersReady,
  connectionsPerMailbox: number,
  settings: Record<string, string>,
): Promise<Runtime> {
  const config = loadConfig({
    RELAY_TENANT_ID: peers.tenantId,
    RELAY_CLIENT_ID: benchIdentity.clientId,
    RELAY_AUTHORITY_HOST: peers.authorityHost,
    RELAY_KEY_VAULT_URL: peers.vaultUrl,
    RELAY_CLIENT_SECRET_NAME: benchIdentity.secretName,
    RELAY_SMTP_HOST: 'localhost',
    RELAY_SMTP_PORT: String(peers.smtpPort),
    RELAY_SMTP_MAX_CONNECTIONS: String(connectionsPerMailbox),
    // Exchange's 30 messages per minute would turn the benchmark into a measure of the rate limiter; the
    // limiter still runs on every send (its cost is counted), it just never has to hold one back.
    RELAY_MAILBOX_RATE_PER_MINUTE: '100000',
    // The ratios compare the relay's own work with bare nodemailer's; the shared limits' storage round
    // trips are measured on their own (bench/limits.ts).
    RELAY_STATE_STORE: 'memory',
    ...settings,
  });
  const vault = await createKeyVaultSecretStore({
    vaultUrl: peers.vaultUrl,
    credential: {
      getToken: async () => ({ token: 'bench-vault-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
    },
    clientOptions: { disableChallengeResourceVerification: true },
  });
  const secrets = createCachedSecretStore(vault, { ttlSeconds: config.secrets.cacheSeconds });
  return createRuntime(config, secrets);
}

/** The send request the host would build for a JSON body, and the context it would invoke with. */
export function sendInvocation(id: string, body: { text: string; bytes: number }, apiKey: string) {
  return {
    request: new HttpRequest({
      method: 'POST',
      url: sendUrl,
      headers: {
        'content-type': 'application/json',
        'content-length': String(body.bytes),
        'x-relay-key': apiKey,
      },
      body: { string: body.text },
    }),
    context: new InvocationContext({ invocationId: id, functionName: 'send', logHandler: () => {} }),
  };
}

export async function createRelaySide(options: SideOptions): Promise<Side & { runtime: Runtime }> {
  const { peers } = options;
  const callerRules = Array.from({ length: options.callers }, (_, index) => ({
    name: `bench-app-${index}`,
    keySha256: hashCallerKey(callerKey(index)),
    senders: [mailboxAddress(index % options.mailboxes)],
  }));
  const runtime = await createBenchRuntime(peers, options.connectionsPerMailbox, {
    RELAY_CALLERS: JSON.stringify(callerRules),
  });
  const handler = bindHttp(send, runtime);

  // Instrumentation, not a stand-in: the real transports, with the time spent inside sendMail recorded so
  // the relay's own share of each request can be told apart from SMTP's.
  const insideSendMail = new Map<string, number>();
  const withSession = runtime.transports.withSession.bind(runtime.transports);
  runtime.transports.withSession = (mailbox, maxWaitMs, use) => {
    // Waiting for one of the mailbox's sessions is the relay's connection queue, which nodemailer's pool
    // held inside sendMail before the limits were shared: it stays on the SMTP side of the split.
    const asked = performance.now();
    return withSession(mailbox, maxWaitMs, (transport) => {
      const timed = Object.create(transport) as MailboxTransport;
      timed.sendMail = ((mail: SendMailOptions) =>
        transport.sendMail(mail).finally(() => {
          // Raw MIME carries its headers in the stream: no id here, and no split for it (see createRawRelaySide).
          const id = headerIdOf(mail);
          if (id !== '') insideSendMail.set(id, performance.now() - asked);
        })) as typeof transport.sendMail;
      return use(timed);
    });
  };

  return {
    name: 'relay',
    runtime,
    async send(index, messages) {
      const id = `relay-${index}`;
      const caller = index % options.callers;
      const body = messages.json(id, mailboxAddress(caller % options.mailboxes));
      // The host builds the request before it invokes the function: not the relay's time.
      const { request, context } = sendInvocation(
        id,
        options.ownCopies ? { text: ownCopy(body.text), bytes: body.bytes } : body,
        callerKey(caller),
      );
      const started = performance.now();
      const response = await handler(request, context);
      const latencyMs = performance.now() - started;
      if (response.status !== 200) {
        throw new Error(`relay answered ${response.status}: ${JSON.stringify(response.jsonBody)}`);
      }
      const inside = insideSendMail.get(id) ?? 0;
      insideSendMail.delete(id);
      return { latencyMs, addedMs: latencyMs - inside };
    },
    close: () => runtime.close(),
  };
}

/** The development host serving only POST /api/send on `runtime`, on a free loopback port. */
export function startSendHost(runtime: Runtime): Promise<DevHost> {
  const hostedSend = functionApp.http.get('send');
  if (hostedSend === undefined) throw new Error('functions/send.ts did not register the send function');
  return startDevHost({
    functionApp: { http: new Map([['send', hostedSend]]), timers: new Map(), queues: new Map() },
    runtime: async () => runtime,
    port: 0,
    hostname: '127.0.0.1',
    triggers: false,
  });
}

/**
 * The relay receiving raw MIME (`Content-Type: message/rfc822`) over real HTTP: the development host in
 * this process serves the send function on `runtime`, and each message's bytes are streamed to it in
 * chunks, as a caller's mail library would. The latency is the client's, upload and answer included; the
 * relay's own share is not told apart (the message's id travels inside the stream). The client's work is
 * done in this process too, so it counts against the relay.
 */
export async function createRawRelaySide(
  options: SideOptions,
  runtime: Runtime,
): Promise<Side & { origin: string }> {
  const host = await startSendHost(runtime);
  const client = createHttpClient(host.origin);
  return {
    name: 'relay raw',
    origin: host.origin,
    async send(index, messages) {
      const id = `relay-raw-${index}`;
      const caller = index % options.callers;
      const message = await messages.raw(id, mailboxAddress(caller % options.mailboxes));
      const started = performance.now();
      const answer = await client.post(
        '/api/send',
        { 'content-type': 'message/rfc822', 'x-relay-key': callerKey(caller) },
        message.chunks,
      );
      const latencyMs = performance.now() - started;
      if (answer.status !== 200) {
        throw new Error(`relay answered ${answer.status} to raw MIME: ${JSON.stringify(answer.body)}`);
      }
      return { latencyMs };
    },
    async close() {
      client.close();
      await host.close();
    },
  };
}

function bareTransports(options: SideOptions): Transporter[] {
  const { peers } = options;
  return Array.from({ length: options.mailboxes }, (_, index) =>
    nodemailer.createTransport({
      pool: true,
      maxConnections: options.connectionsPerMailbox,
      maxMessages: 100,
      host: 'localhost',
      port: peers.smtpPort,
      secure: false,
      requireTLS: true,
      tls: { minVersion: 'TLSv1.2', servername: 'localhost' },
      auth: { type: 'OAuth2', user: mailboxAddress(index), accessToken: benchIdentity.bareToken },
    }),
  );
}

export function createBareSide(options: SideOptions): Side {
  const transports = bareTransports(options);
  return {
    name: 'bare',
    async send(index, messages) {
      const mailbox = (index % options.callers) % options.mailboxes;
      const mail = messages.mail(`bare-${index}`, mailboxAddress(mailbox));
      // Its own bytes per message, as the relay has its own decoded attachment per request.
      mail.attachments = mail.attachments.map((file) => ({ ...file, content: Buffer.from(file.content) }));
      const started = performance.now();
      await transports[mailbox]?.sendMail(mail);
      const latencyMs = performance.now() - started;
      return { latencyMs, addedMs: 0 };
    },
    close() {
      for (const transport of transports) transport.close();
    },
  };
}

/** Bare nodemailer sending a message it already has as MIME: `sendMail({ envelope, raw: stream })`. */
export function createRawBareSide(options: SideOptions): Side {
  const transports = bareTransports(options);
  return {
    name: 'bare raw',
    async send(index, messages) {
      const mailbox = (index % options.callers) % options.mailboxes;
      const from = mailboxAddress(mailbox);
      const message = await messages.raw(`bare-raw-${index}`, from);
      const started = performance.now();
      await transports[mailbox]?.sendMail({
        envelope: { from, to: [benchRecipient] },
        raw: Readable.from(message.chunks, { objectMode: false }),
      });
      const latencyMs = performance.now() - started;
      return { latencyMs };
    },
    close() {
      for (const transport of transports) transport.close();
    },
  };
}

export interface LoadResult {
  messages: number;
  wallMs: number;
  latencies: number[];
  added: number[];
}

/** Sends `count` messages with `concurrency` callers, each sending its next message as soon as one returns. */
export async function runLoad(
  side: Side,
  messages: MessageFactory,
  count: number,
  concurrency: number,
  firstIndex: number,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const added: number[] = [];
  let next = 0;
  const started = performance.now();
  async function caller(): Promise<void> {
    while (next < count) {
      const index = firstIndex + next;
      next += 1;
      const timing = await side.send(index, messages);
      latencies.push(timing.latencyMs);
      if (timing.addedMs !== undefined) added.push(timing.addedMs);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, caller));
  return { messages: count, wallMs: performance.now() - started, latencies, added };
}
