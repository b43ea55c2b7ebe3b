import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import functions from '@azure/functions';
import { createQueueListener } from '../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../functions/register.ts';
import { send } from '../functions/send.ts';
import { sendQueued } from '../functions/sendQueued.ts';
import { hashCallerKey } from '../shared/callers.ts';
import type { QueueOutcome } from '../shared/durable/queuedSendProcessor.ts';
import type { Runtime } from '../shared/runtime.ts';
import { startAzurite } from '../test/support/azurite.ts';
import type { MessageFactory } from './messages.ts';
import type { Peers } from './peers.ts';
import { createBenchRuntime, type LoadResult, runLoad, type Side, sendInvocation } from './sides.ts';
import { round } from './stats.ts';

/**
 * The cost of the per-mailbox limits every instance shares through the storage account (issue 11), against
 * Azurite on loopback:
 * - synchronous sends with the limits in storage against the same sends with them in this process's memory
 *   (RELAY_STATE_STORE), through the send handler as in the other scenarios, in alternating rounds, with
 *   no SMTP command latency (where the storage round trips weigh most): the throughput each way, and the
 *   storage operations per message (the stores' own counters; the warm-up takes the session slots, so
 *   the measured rounds pay the schedule's writes and the slots' renewals, one per session every 5 s);
 * - a queued backlog (`Prefer: respond-async`) over a few mailboxes at a rate low enough that the limiter is
 *   what bounds it, drained by the development host's queue listener with host.json's settings: its
 *   throughput against the most the rate allows (rate / 60 x mailboxes), the queue deliveries per message
 *   and the storage operations per message.
 * Each side signs in as mailboxes of its own, so one side's idle sessions never count against another's.
 * Storage requests (every HTTP request this process made to Azurite, retries included) are counted
 * besides the stores' counters: for the queued backlog they include the send queue, the status table and
 * the listener's polls.
 */
export interface LimitsResult {
  scenario: string;
  messages: number;
  concurrency: number;
  syncMailboxes: number;
  syncStoragePerSecond: number;
  syncMemoryPerSecond: number;
  /** Storage over memory: 1 when sharing the limits costs nothing. */
  syncRatioStorageVsMemory: number;
  /** Schedule plus session-slot operations per measured synchronous send, storage side. */
  storageOpsPerSyncMessage: number;
  scheduleOpsPerSyncMessage: number;
  sessionSlotOpsPerSyncMessage: number;
  /** Every request to Azurite per synchronous send (the limits are all a plain send stores). */
  storageRequestsPerSyncMessage: number;
  drainMessages: number;
  drainMailboxes: number;
  drainRatePerMinute: number;
  /** rate / 60 x mailboxes: what the limiter allows at most. */
  drainMaxPerSecond: number;
  /** Messages over the time from the first acceptance to the last message sent. */
  drainPerSecond: number;
  /** Can exceed 1 a little: a mailbox's n starts are spaced 60 s / rate apart, so they span n - 1 spacings. */
  drainFractionOfMax: number;
  drainSeconds: number;
  /** How fast the backlog was accepted (202s per second), which must outrun the rate for the drain to measure it. */
  acceptPerSecond: number;
  /** Queue listener invocations per message: 1 when every message is delivered once, at its start. */
  drainDeliveriesPerMessage: number;
  /**
   * The processor's outcome per delivery. The listener starts once the whole backlog is accepted, so a
   * message it reaches more than LATE_START_MS (shared/limits/sendSchedule.ts) after its start reserves
   * again and goes back to the queue: `rate_delayed`.
   */
  drainOutcomes: Partial<Record<QueueOutcome, number>>;
  /** Schedule plus session-slot operations per queued message, accepting and sending it. */
  storageOpsPerQueuedMessage: number;
  /** Every request to Azurite per queued message: limits, status rows, queue messages and queue polls. */
  storageRequestsPerQueuedMessage: number;
  peakSessionsPerMailbox: number;
}

export interface LimitsOptions {
  messages: number;
  rounds: number;
  concurrency: number;
  connectionsPerMailbox: number;
  factory: MessageFactory;
}

const callerKey = 'bench-limits-caller-key-0123456789abcdef';
const SYNC_MAILBOXES = 3;
const DRAIN_MAILBOXES = 3;
/**
 * Far above Exchange's 30 a minute, so the drain takes seconds, yet low enough that the limiter (not SMTP,
 * the queue or Azurite) is what bounds it.
 */
const DRAIN_RATE_PER_MINUTE = 600;

const addressOf = (side: string, index: number) => `limits-${side}-${index}@bench.contoso.com`;
const addressesOf = (side: string, count: number) =>
  Array.from({ length: count }, (_, index) => addressOf(side, index));

function limitsOperations(runtime: Runtime): { schedules: number; sessionSlots: number } {
  return {
    schedules: runtime.limitStores.schedules.operations,
    sessionSlots: runtime.limitStores.sessionSlots.operations,
  };
}

/** Counts the HTTP requests this process starts to the given host:port pairs (Node's http diagnostics). */
function countRequestsTo(hosts: readonly string[]): { readonly count: number; stop(): void } {
  let count = 0;
  const onStart = (message: unknown) => {
    const { request } = message as { request: ClientRequest };
    if (hosts.includes(String(request.getHeader('host')))) count += 1;
  };
  diagnostics.subscribe('http.client.request.start', onStart);
  return {
    get count() {
      return count;
    },
    stop: () => diagnostics.unsubscribe('http.client.request.start', onStart),
  };
}

function azuriteHosts(connectionString: string): string[] {
  return [...connectionString.matchAll(/Endpoint=http:\/\/([^/;]+)/g)].map((match) => match[1] as string);
}

async function limitsRuntime(
  peers: Peers,
  options: LimitsOptions,
  mailboxes: readonly string[],
  settings: Record<string, string>,
): Promise<Runtime> {
  return createBenchRuntime(peers.ready, options.connectionsPerMailbox, {
    RELAY_CALLERS: JSON.stringify([
      { name: 'bench-limits-app', keySha256: hashCallerKey(callerKey), senders: mailboxes },
    ]),
    ...settings,
  });
}

/** sendInvocation's request with `Prefer: respond-async`, as a caller queueing the message sends it. */
function queuedInvocation(id: string, body: { text: string; bytes: number }) {
  const { request, context } = sendInvocation(id, body, callerKey);
  const headers = Object.fromEntries(request.headers);
  return {
    request: new functions.HttpRequest({
      method: 'POST',
      url: request.url,
      headers: { ...headers, prefer: 'respond-async' },
      body: { string: body.text },
    }),
    context,
  };
}

function syncSide(runtime: Runtime, mailboxes: readonly string[], tag: string): Side {
  const handler = bindHttp(send, runtime);
  return {
    name: 'relay',
    async send(index, messages) {
      const id = `limits-${tag}-${index}`;
      const from = mailboxes[index % mailboxes.length] as string;
      const { request, context } = sendInvocation(id, messages.json(id, from), callerKey);
      const started = performance.now();
      const response = await handler(request, context);
      if (response.status !== 200) {
        throw new Error(`relay answered ${response.status}: ${JSON.stringify(response.jsonBody)}`);
      }
      return { latencyMs: performance.now() - started, addedMs: 0 };
    },
    close: () => undefined,
  };
}

export async function measureLimits(peers: Peers, options: LimitsOptions): Promise<LimitsResult> {
  const azurite = await startAzurite();
  const requests = countRequestsTo(azuriteHosts(azurite.connectionString));
  const storageSettings = {
    RELAY_STATE_STORE: 'storage',
    RELAY_STORAGE_CONNECTION: azurite.connectionString,
  };
  try {
    await peers.setCommandLatency(0);
    const sync = await measureSync(peers, options, storageSettings, requests);
    const drain = await measureDrain(peers, options, storageSettings, requests);
    return {
      scenario: `limits in storage (Azurite) vs memory, 0 ms per SMTP command; queued backlog over ${DRAIN_MAILBOXES} mailboxes at ${DRAIN_RATE_PER_MINUTE} a minute each`,
      messages: options.messages,
      concurrency: options.concurrency,
      ...sync,
      ...drain,
    };
  } finally {
    requests.stop();
    await azurite.stop();
  }
}

type SyncFigures = Pick<
  LimitsResult,
  | 'syncMailboxes'
  | 'syncStoragePerSecond'
  | 'syncMemoryPerSecond'
  | 'syncRatioStorageVsMemory'
  | 'storageOpsPerSyncMessage'
  | 'scheduleOpsPerSyncMessage'
  | 'sessionSlotOpsPerSyncMessage'
  | 'storageRequestsPerSyncMessage'
>;

async function measureSync(
  peers: Peers,
  options: LimitsOptions,
  storageSettings: Record<string, string>,
  requests: { readonly count: number },
): Promise<SyncFigures> {
  const memoryMailboxes = addressesOf('memory', SYNC_MAILBOXES);
  const storageMailboxes = addressesOf('storage', SYNC_MAILBOXES);
  const memoryRuntime = await limitsRuntime(peers, options, memoryMailboxes, {
    RELAY_STATE_STORE: 'memory',
  });
  const storageRuntime = await limitsRuntime(peers, options, storageMailboxes, storageSettings);
  const memory = syncSide(memoryRuntime, memoryMailboxes, 'memory');
  const storage = syncSide(storageRuntime, storageMailboxes, 'storage');
  try {
    // Warm-up: the token, the Key Vault read, the tables and containers, the sessions and their slots.
    let next = 0;
    for (const side of [memory, storage]) {
      await runLoad(side, options.factory, options.concurrency, options.concurrency, next);
      next += options.concurrency;
    }
    const operationsBefore = limitsOperations(storageRuntime);
    const requestsBefore = requests.count;
    const runs = new Map<Side, LoadResult[]>([
      [memory, []],
      [storage, []],
    ]);
    const perRound = Math.max(1, Math.floor(options.messages / options.rounds));
    for (let roundIndex = 0; roundIndex < options.rounds; roundIndex += 1) {
      for (const side of roundIndex % 2 === 0 ? [memory, storage] : [storage, memory]) {
        runs.get(side)?.push(await runLoad(side, options.factory, perRound, options.concurrency, next));
        next += perRound;
      }
    }
    // Only the storage side's requests reach Azurite: the memory side's limits never leave the process.
    const storageRequests = requests.count - requestsBefore;
    const operationsAfter = limitsOperations(storageRuntime);
    const perSecond = (side: Side) => {
      const list = runs.get(side) ?? [];
      const messages = list.reduce((sum, run) => sum + run.messages, 0);
      return (messages / list.reduce((sum, run) => sum + run.wallMs, 0)) * 1000;
    };
    const measured = perRound * options.rounds;
    const scheduleOps = operationsAfter.schedules - operationsBefore.schedules;
    const slotOps = operationsAfter.sessionSlots - operationsBefore.sessionSlots;
    const storagePerSecond = perSecond(storage);
    const memoryPerSecond = perSecond(memory);
    return {
      syncMailboxes: SYNC_MAILBOXES,
      syncStoragePerSecond: round(storagePerSecond, 1),
      syncMemoryPerSecond: round(memoryPerSecond, 1),
      syncRatioStorageVsMemory: round(storagePerSecond / memoryPerSecond, 3),
      storageOpsPerSyncMessage: round((scheduleOps + slotOps) / measured, 3),
      scheduleOpsPerSyncMessage: round(scheduleOps / measured, 3),
      sessionSlotOpsPerSyncMessage: round(slotOps / measured, 3),
      storageRequestsPerSyncMessage: round(storageRequests / measured, 3),
    };
  } finally {
    await Promise.all([memoryRuntime.close(), storageRuntime.close()]);
  }
}

type DrainFigures = Omit<LimitsResult, keyof SyncFigures | 'scenario' | 'messages' | 'concurrency'>;

async function measureDrain(
  peers: Peers,
  options: LimitsOptions,
  storageSettings: Record<string, string>,
  requests: { readonly count: number },
): Promise<DrainFigures> {
  const mailboxes = addressesOf('queued', DRAIN_MAILBOXES);
  const runtime = await limitsRuntime(peers, options, mailboxes, {
    ...storageSettings,
    RELAY_MAILBOX_RATE_PER_MINUTE: String(DRAIN_RATE_PER_MINUTE),
  });
  const handler = bindHttp(send, runtime);
  try {
    // The storage clients and tables exist before the clock starts, as they do on a running instance.
    await runtime.storage.ready();
    // Instrumentation, not a stand-in: the real processor, with each outcome counted as it happens.
    const outcomes: Partial<Record<QueueOutcome, number>> = {};
    let lastSentAt = 0;
    const processor = runtime.queuedSends;
    const processQueued = processor.process.bind(processor);
    processor.process = async (queueItem, delivery) => {
      const outcome = await processQueued(queueItem, delivery);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      if (outcome === 'sent') lastSentAt = performance.now();
      return outcome;
    };

    const operationsBefore = limitsOperations(runtime);
    const requestsBefore = requests.count;
    const deliveredBefore = (await peers.stats()).delivered;
    const ids: string[] = [];
    const accepting: Side = {
      name: 'relay',
      async send(index, messages) {
        const id = `limits-queued-${index}`;
        const from = mailboxes[index % mailboxes.length] as string;
        const { request, context } = queuedInvocation(id, messages.json(id, from));
        const response = await handler(request, context);
        if (response.status !== 202) {
          throw new Error(`relay answered ${response.status}: ${JSON.stringify(response.jsonBody)}`);
        }
        ids.push((response.jsonBody as { id: string }).id);
        return { latencyMs: 0, addedMs: 0 };
      },
      close: () => undefined,
    };
    const firstAcceptAt = performance.now();
    const accepted = await runLoad(accepting, options.factory, options.messages, options.concurrency, 0);

    const listener = createQueueListener({
      functionName: 'sendQueued',
      queue: runtime.storage.sendQueue,
      poisonQueue: runtime.storage.poisonQueue,
      handler: triggerHandler(sendQueued, runtime),
    });
    const maxPerSecond = (DRAIN_RATE_PER_MINUTE / 60) * DRAIN_MAILBOXES;
    const settled = () => (outcomes.sent ?? 0) + (outcomes.failed ?? 0) >= options.messages;
    await listener.runUntil(settled, 60_000 + (options.messages / maxPerSecond) * 4_000);
    const operationsAfter = limitsOperations(runtime);
    const drainRequests = requests.count - requestsBefore;
    const after = await peers.stats();

    const delivered = after.delivered - deliveredBefore;
    if ((outcomes.sent ?? 0) !== options.messages || delivered !== options.messages) {
      throw new Error(
        `queued backlog: ${outcomes.sent ?? 0} of ${options.messages} sent, ${delivered} reached the SMTP peer (${JSON.stringify(outcomes)})`,
      );
    }
    const states = await Promise.all(
      ids.map(async (id) => (await runtime.sendQueue.statuses.get('bench-limits-app', id))?.status.state),
    );
    const notSent = states.filter((state) => state !== 'sent').length;
    if (notSent > 0) throw new Error(`queued backlog: ${notSent} statuses are not "sent"`);

    const drainMs = lastSentAt - firstAcceptAt;
    const drainPerSecond = (options.messages / drainMs) * 1000;
    const limitsOps =
      operationsAfter.schedules -
      operationsBefore.schedules +
      (operationsAfter.sessionSlots - operationsBefore.sessionSlots);
    return {
      drainMessages: options.messages,
      drainMailboxes: DRAIN_MAILBOXES,
      drainRatePerMinute: DRAIN_RATE_PER_MINUTE,
      drainMaxPerSecond: round(maxPerSecond, 1),
      drainPerSecond: round(drainPerSecond, 1),
      drainFractionOfMax: round(drainPerSecond / maxPerSecond, 3),
      drainSeconds: round(drainMs / 1000, 1),
      acceptPerSecond: round((accepted.messages / accepted.wallMs) * 1000, 1),
      drainDeliveriesPerMessage: round(listener.stats.invocations / options.messages, 3),
      drainOutcomes: outcomes,
      storageOpsPerQueuedMessage: round(limitsOps / options.messages, 3),
      storageRequestsPerQueuedMessage: round(drainRequests / options.messages, 3),
      peakSessionsPerMailbox: Math.max(
        0,
        ...mailboxes.map((mailbox) => after.peakConnectionsByUser[mailbox] ?? 0),
      ),
    };
  } finally {
    await runtime.close();
  }
}
