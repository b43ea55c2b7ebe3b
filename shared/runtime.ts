import { authenticateCaller } from './callers.ts';
import { ConfigError, loadConfig, type RelayConfig } from './config.ts';
import { createMailboxDisconnect, type Disconnected } from './delegated/disconnect.ts';
import { createStatusReporter, type StatusReport } from './delegated/statusReport.ts';
import { createTokenMaintenance, type TokenMaintenance } from './delegated/tokenMaintenance.ts';
import { type ConnectionCheck, createConnectionCheck } from './diagnostics/connectionCheck.ts';
import { createQueueAdmin, type QueueAdmin } from './durable/queueAdmin.ts';
import { createQueuedSendProcessor, type QueuedSendProcessor } from './durable/queuedSendProcessor.ts';
import { createSendQueue, type SendQueue } from './durable/sendQueue.ts';
import { findPublicStatus } from './durable/sendStatus.ts';
import {
  type BatchSubmitter,
  createSendSubmitter,
  type RawSendSubmitter,
  type SendSubmitter,
} from './durable/submitSend.ts';
import { RelayError } from './errors.ts';
import { alertMailChannel } from './health/alertMail.ts';
import {
  type AlertChannel,
  createHealthAlerts,
  type HealthAlerts,
  webhookChannel,
} from './health/healthAlerts.ts';
import { createHealthReporter, type HealthReport } from './health/healthReport.ts';
import { createMailboxHealthStore, type MailboxHealthStore } from './health/mailboxHealth.ts';
import { createIdempotencyStore, type IdempotencyStore } from './idempotency/idempotencyStore.ts';
import {
  type CallerQueueQuota,
  createMemoryQueueQuota,
  createTableQueueQuota,
} from './limits/callerQueueQuota.ts';
import {
  createMemoryScheduleStore,
  createMemorySessionSlots,
  type ScheduleStore,
  type SessionSlotStore,
} from './limits/limitStores.ts';
import { createMailboxLimits, type MailboxLimits } from './limits/mailboxLimits.ts';
import { createBlobSessionSlots, createTableScheduleStore } from './limits/storageLimitStores.ts';
import { createMailboxDirectory, type MailboxDirectory } from './mailboxes.ts';
import { type ConsentFlow, createConsentFlow } from './oauth/consentFlow.ts';
import { createPendingConsents } from './oauth/pendingConsents.ts';
import { createRelay, type Relay } from './relay.ts';
import type { CachedSecretStore } from './secrets/cachedSecretStore.ts';
import { createSecretStore, defaultAzureCredential } from './secrets/createSecretStore.ts';
import { createSenderRouter, type SenderRouter } from './senderRoutes.ts';
import { createMailboxTransports, type MailboxTransports } from './smtp/mailboxTransports.ts';
import { createMailSender } from './smtp/mailSender.ts';
import { createHousekeeping, createKeyVaultMigration } from './state/housekeeping.ts';
import { createMemoryStateTable, createTableStateTable, type StateTable } from './state/stateTable.ts';
import { createRelayStorage, type RelayStorage } from './storage/relayStorage.ts';
import type { MailboxTokenProvider } from './tokens/accessToken.ts';
import { createAppOnlyTokenSource } from './tokens/appOnlyTokenSource.ts';
import {
  createDelegatedClients,
  createDelegatedTokenSource,
  mailboxNotConnected,
} from './tokens/delegatedTokenSource.ts';
import { createMailboxTokens, mailboxTokenKey } from './tokens/mailboxTokens.ts';
import { createTokenCache } from './tokens/tokenCache.ts';
import { tokenCacheSecretName } from './tokens/tokenCachePlugin.ts';

/**
 * The composition root: wires configuration, the secret store, token sources, transports and the relay.
 * Tests call `createRuntime` with their own configuration and store; the function app uses
 * `runtimeFromEnvironment`, the only place that reads process.env.
 */
export interface Runtime {
  config: RelayConfig;
  secrets: CachedSecretStore;
  transports: MailboxTransports;
  relay: Relay;
  mailboxes: MailboxDirectory;
  /** Which mailbox signs in for each From address (RELAY_SENDER_ROUTES). */
  senderRouter: SenderRouter;
  /** Connecting delegated mailboxes (/api/oauth/start and /api/oauth/callback). */
  consent: ConsentFlow;
  /** The tokenRefresh timer's work. */
  maintenance: TokenMaintenance;
  status(): Promise<StatusReport>;
  /** GET /api/health: 200 or 503 with the problems, from stored health. */
  health(): Promise<HealthReport>;
  /** What the relay last learned about each mailbox and the app's credential (the shared state table). */
  mailboxHealth: MailboxHealthStore;
  alerts: HealthAlerts;
  /** DELETE /api/mailboxes/{address}/connection. */
  disconnect(address: string): Promise<Disconnected>;
  /** The relay's state shared by every instance (unless RELAY_STATE_STORE=memory). */
  state: StateTable;
  /** The same token pipeline the transports use; diagnostics ask it directly. */
  tokens: MailboxTokenProvider;
  /** The per-mailbox limits every send goes through (shared by all instances unless RELAY_STATE_STORE=memory). */
  limits: MailboxLimits;
  limitStores: { schedules: ScheduleStore; sessionSlots: SessionSlotStore; queueQuota: CallerQueueQuota };
  storage: RelayStorage;
  sendQueue: SendQueue;
  idempotency: IdempotencyStore;
  queuedSends: QueuedSendProcessor;
  /** The admin page's queue counts and the retry of a poisoned message. */
  queueAdmin: QueueAdmin;
  /** POST /api/send's whole use case: caller, validation, sender check, send or queue, idempotency. */
  submitSend: SendSubmitter;
  /** The same for a request of several messages (the compatible APIs, shared/compatible/). */
  submitSends: BatchSubmitter;
  /** POST /api/send with a raw MIME message (Content-Type: message/rfc822), streamed from the request. */
  submitRawSend: RawSendSubmitter;
  /** GET /api/send/{id}: the caller's queued message, by the caller's key. */
  queuedSendStatus(callerKey: string | null, id: string): Promise<Record<string, unknown>>;
  /** POST /api/mailboxes/{address}/test: the step-by-step connection check. */
  checkConnection: ConnectionCheck;
  close(): Promise<void>;
}

type DurableParts = Pick<Runtime, 'storage' | 'sendQueue' | 'idempotency' | 'queuedSends' | 'queueAdmin'>;

/**
 * The per-mailbox limits' stores: the storage account's, which every instance shares (its SDKs are then
 * loaded at start-up, since every send needs them), or this process's memory with RELAY_STATE_STORE=memory.
 */
function limitStoresFor(config: RelayConfig, storage: () => RelayStorage): Runtime['limitStores'] {
  const quota = { maxMessages: config.queue.maxMessagesPerCaller, maxBytes: config.queue.maxBytesPerCaller };
  if (config.storage.stateStore === 'memory') {
    return {
      schedules: createMemoryScheduleStore(),
      sessionSlots: createMemorySessionSlots(),
      queueQuota: createMemoryQueueQuota(quota),
    };
  }
  const shared = storage();
  return {
    schedules: createTableScheduleStore(shared.mailboxLimits, shared.ready),
    sessionSlots: createBlobSessionSlots(shared.sessionSlots, shared.ready),
    queueQuota: createTableQueueQuota(shared.mailboxLimits, shared.ready, quota),
  };
}

export interface RuntimeOptions {
  /** Where what happens outside any request is logged (alerts sent or failed); nowhere unless given. */
  log?: (line: string) => void;
  /** The clock health records and the disconnect check use (tests move it on). */
  now?: () => number;
}

export function createRuntime(
  config: RelayConfig,
  secrets: CachedSecretStore,
  runtimeOptions: RuntimeOptions = {},
): Runtime {
  const log = runtimeOptions.log ?? (() => undefined);
  const tokenCache = createTokenCache({ marginSeconds: config.identity.expiryMarginSeconds });
  const appOnly = createAppOnlyTokenSource(config.identity, config.smtp.scope, secrets);
  const mailboxes = createMailboxDirectory(config.mailboxes, config.delegated.publicBaseUrl);
  const delegatedClients = createDelegatedClients(config.identity, config.delegated.scope, secrets);
  const delegated = createDelegatedTokenSource({
    clients: delegatedClients,
    scope: config.delegated.scope,
    secrets,
    directory: mailboxes,
  });
  // The storage clients (and the three storage SDKs behind them) are built on first use: with the shared
  // state in memory, a synchronous send without an Idempotency-Key never touches storage.
  let storageClients: RelayStorage | undefined;
  const storageOf = () => {
    storageClients ??= createRelayStorage(config.storage);
    return storageClients;
  };
  const state =
    config.storage.stateStore === 'memory'
      ? createMemoryStateTable()
      : createTableStateTable(storageOf().relayState, storageOf().ready);
  let alerts: HealthAlerts | undefined;
  const health = createMailboxHealthStore({
    state,
    modeOf: mailboxes.listedModeOf,
    onChange: (change) => alerts?.mailboxChanged(change),
    onReconnected(mailbox) {
      secrets.invalidate(tokenCacheSecretName(mailbox));
      tokenCache.invalidate(mailboxTokenKey('delegated', mailbox));
    },
    ...(runtimeOptions.now === undefined ? {} : { now: runtimeOptions.now }),
  });
  const tokens = createMailboxTokens(tokenCache, { app: appOnly, delegated }, mailboxes.modeOf, (mailbox) =>
    health.assertNotDisconnected(mailbox, () =>
      mailboxNotConnected(mailbox, mailboxes.consentStartUrl(mailbox), 'disconnected'),
    ),
  );
  const limitStores = limitStoresFor(config, storageOf);
  const limits = createMailboxLimits(limitStores.schedules, {
    messagesPerMinute: config.throttle.messagesPerMinute,
    recipientsPerDay: config.throttle.recipientsPerDay,
  });
  const transports = createMailboxTransports(config.smtp, tokens, limitStores.sessionSlots);
  const senderRouter = createSenderRouter(config.senderRoutes, config.mailboxes);
  const relay = createRelay({
    mailSender: createMailSender(config.smtp, tokens),
    router: senderRouter,
    transports,
    limits,
    defaultWaitMs: config.throttle.maxWaitSeconds * 1000,
    syncSessionWaitMs: config.smtp.timeoutSeconds * 1000,
    recordOutcome: (signIn, error) => health.recordSendOutcome(signIn, error),
  });
  const channels: AlertChannel[] = [
    ...(config.alerts.webhookUrl === undefined ? [] : [webhookChannel(config.alerts.webhookUrl)]),
    ...(config.alerts.email === undefined
      ? []
      : [
          alertMailChannel({
            to: config.alerts.email,
            relay,
            health,
            directory: mailboxes,
            limits: config.limits,
          }),
        ]),
  ];
  alerts = createHealthAlerts({ health, directory: mailboxes, channels, log });
  const migrate = createKeyVaultMigration({ state, secrets, directory: mailboxes });
  let durable: DurableParts | undefined;
  const durableParts = (): DurableParts => {
    if (durable === undefined) {
      const storage = storageOf();
      const sendQueue = createSendQueue(storage, limitStores.queueQuota);
      durable = {
        storage,
        sendQueue,
        idempotency: createIdempotencyStore(storage.idempotencyKeys, storage.ready, Date.now, log),
        queuedSends: createQueuedSendProcessor({ queue: sendQueue, relay, config }),
        queueAdmin: createQueueAdmin({ storage, queue: sendQueue, quota: limitStores.queueQuota }),
      };
    }
    return durable;
  };
  const pending = createPendingConsents(state);
  const consent = createConsentFlow({
    directory: mailboxes,
    clients: delegatedClients,
    pending,
    scope: config.delegated.scope,
    publicBaseUrl: config.delegated.publicBaseUrl,
    async onConnected(mailbox, at) {
      tokenCache.invalidate(mailboxTokenKey('delegated', mailbox));
      await health.recordConnected(mailbox, at);
    },
  });
  const maintenance = createTokenMaintenance({
    directory: mailboxes,
    tokens,
    health,
    alerts,
    // With the state in memory, storage is there only if this process queued or used idempotency keys.
    housekeeping: createHousekeeping({
      state,
      tables: () =>
        config.storage.stateStore === 'memory' && storageClients === undefined ? undefined : storageOf(),
    }),
    migrate,
    identity: config.identity,
    secrets,
  });
  const statusReporter = createStatusReporter({
    directory: mailboxes,
    senderRoutes: config.senderRoutes,
    health,
    migrate,
    identity: config.identity,
    secrets,
  });
  const healthReporter = createHealthReporter({ status: () => statusReporter.report() });
  const disconnect = createMailboxDisconnect({
    directory: mailboxes,
    health,
    secrets,
    async forget(mailbox) {
      tokenCache.invalidate(mailboxTokenKey('delegated', mailbox));
    },
  });
  const runtime: Runtime = {
    config,
    secrets,
    transports,
    relay,
    mailboxes,
    senderRouter,
    consent,
    maintenance,
    status: () => statusReporter.report(),
    health: () => healthReporter.report(),
    mailboxHealth: health,
    alerts,
    disconnect,
    state,
    tokens,
    limits,
    limitStores,
    get storage() {
      return durableParts().storage;
    },
    get sendQueue() {
      return durableParts().sendQueue;
    },
    get idempotency() {
      return durableParts().idempotency;
    },
    get queuedSends() {
      return durableParts().queuedSends;
    },
    get queueAdmin() {
      return durableParts().queueAdmin;
    },
    // The runtime itself is the submitter's dependency: its durable parts are built on first use.
    submitSend: (submission) => submitters.one(submission),
    submitSends: (submission) => submitters.batch(submission),
    submitRawSend: (submission) => submitters.raw(submission),
    async queuedSendStatus(callerKey, id) {
      const caller = authenticateCaller(callerKey, config.callers);
      const { storage, sendQueue } = durableParts();
      return findPublicStatus(storage.ready, sendQueue.statuses, caller.name, id);
    },
    checkConnection: createConnectionCheck({
      smtp: config.smtp,
      tokens,
      transports,
      limits,
      router: senderRouter,
      modeOf: mailboxes.modeOf,
    }),
    close: () => transports.closeAll(),
  };
  const submitters = createSendSubmitter(config, runtime);
  return runtime;
}

let environmentRuntime: Promise<Runtime> | undefined;

export function runtimeFromEnvironment(): Promise<Runtime> {
  environmentRuntime ??= (async () => {
    const config = configFromEnvironment();
    const vaultCredential = () => defaultAzureCredential(config.identity.managedIdentityClientId);
    return createRuntime(config, await createSecretStore(config.secrets, vaultCredential), {
      // Outside an invocation the worker forwards console output to the host's log (Application Insights).
      // biome-ignore lint/suspicious/noConsole: the one place the relay logs without an InvocationContext
      log: (line) => console.warn(line),
    });
  })();
  // A failed start (bad setting) is reported on every request until it is fixed, not cached as broken.
  environmentRuntime.catch(() => {
    environmentRuntime = undefined;
  });
  return environmentRuntime;
}

export function configFromEnvironment(): RelayConfig {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new RelayError('relay_misconfigured', {
      message: error.message,
    });
  }
}

/**
 * A timer's schedule is needed when the function is registered, before any request: with settings that
 * do not load, fall back to the default configuration's schedule (the bad setting is still reported on
 * every request).
 */
export function timerScheduleFromEnvironment(schedule: (config: RelayConfig) => string): string {
  try {
    return schedule(configFromEnvironment());
  } catch {
    return schedule(loadConfig({}));
  }
}
