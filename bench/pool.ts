import { bindHttp } from '../functions/register.ts';
import { send } from '../functions/send.ts';
import { hashCallerKey } from '../shared/callers.ts';
import type { MessageFactory } from './messages.ts';
import type { Peers } from './peers.ts';
import { poolScenario } from './poolAddresses.ts';
import { createBenchRuntime, type LoadResult, runLoad, type Side, sendInvocation } from './sides.ts';
import { round } from './stats.ts';

/**
 * Sender pools (RELAY_SENDER_ROUTES): one From address signed in for by one mailbox, against one signed in
 * for by a pool of three, through the same relay and the same per-mailbox limit Exchange sets: 3 SMTP
 * connections per signed-in mailbox, against a server with the scenario's latency per command (a remote
 * server, where the connection limit is what bounds a mailbox). The rate limit is raised as in the other
 * scenarios (at Exchange's 30 per minute the ratio is exactly the pool size; test/functions/senderPool.test.ts
 * shows that). Both are Send As routes, so both pay for the route and the envelope alike.
 */
export interface PoolResult {
  scenario: string;
  messages: number;
  concurrency: number;
  commandLatencyMs: number;
  connectionsPerMailbox: number;
  singlePerSecond: number;
  pooledPerSecond: number;
  /** Pooled over single: the pool's size at best. */
  poolRatio: number;
  /** Messages the SMTP peer received per signed-in mailbox of the pool, in the measured rounds. */
  pooledDeliveredByMailbox: Record<string, number>;
  peakConnectionsPerMailbox: number;
}

export interface PoolOptions {
  messages: number;
  rounds: number;
  concurrency: number;
  commandLatencyMs: number;
  connectionsPerMailbox: number;
  factory: MessageFactory;
}

const callerKey = 'bench-pool-caller-key-0123456789abcdef';

export async function measurePool(peers: Peers, options: PoolOptions): Promise<PoolResult> {
  const signIn = [...poolScenario.singleSignIn, ...poolScenario.pooledSignIn];
  const runtime = await createBenchRuntime(peers.ready, options.connectionsPerMailbox, {
    RELAY_CALLERS: JSON.stringify([
      {
        name: 'bench-pool-app',
        keySha256: hashCallerKey(callerKey),
        senders: [poolScenario.singleFrom, poolScenario.pooledFrom],
      },
    ]),
    RELAY_MAILBOXES: JSON.stringify(signIn.map((address) => ({ address, mode: 'app' }))),
    RELAY_SENDER_ROUTES: JSON.stringify([
      { from: poolScenario.singleFrom, signIn: poolScenario.singleSignIn, relation: 'sendAs' },
      { from: poolScenario.pooledFrom, signIn: poolScenario.pooledSignIn, relation: 'sendAs' },
    ]),
  });
  const handler = bindHttp(send, runtime);
  const sideFor = (from: string): Side => ({
    name: 'relay',
    async send(index, messages) {
      const id = `pool-${index}`;
      const { request, context } = sendInvocation(id, messages.json(id, from), callerKey);
      const started = performance.now();
      const response = await handler(request, context);
      if (response.status !== 200) {
        throw new Error(`relay answered ${response.status}: ${JSON.stringify(response.jsonBody)}`);
      }
      const latencyMs = performance.now() - started;
      return { latencyMs, addedMs: 0 };
    },
    close: () => undefined,
  });
  const single = sideFor(poolScenario.singleFrom);
  const pooled = sideFor(poolScenario.pooledFrom);
  try {
    await peers.setCommandLatency(options.commandLatencyMs);
    // Warm-up: the token, the Key Vault read and the pools' first connections.
    let next = 0;
    for (const side of [single, pooled]) {
      await runLoad(side, options.factory, options.concurrency, options.concurrency, next);
      next += options.concurrency;
    }
    const before = await peers.stats();
    const runs = new Map<Side, LoadResult[]>([
      [single, []],
      [pooled, []],
    ]);
    const perRound = Math.max(1, Math.floor(options.messages / options.rounds));
    for (let roundIndex = 0; roundIndex < options.rounds; roundIndex += 1) {
      for (const side of roundIndex % 2 === 0 ? [single, pooled] : [pooled, single]) {
        runs.get(side)?.push(await runLoad(side, options.factory, perRound, options.concurrency, next));
        next += perRound;
      }
    }
    const after = await peers.stats();
    const perSecond = (side: Side) => {
      const list = runs.get(side) ?? [];
      const messages = list.reduce((sum, run) => sum + run.messages, 0);
      return (messages / list.reduce((sum, run) => sum + run.wallMs, 0)) * 1000;
    };
    const singlePerSecond = perSecond(single);
    const pooledPerSecond = perSecond(pooled);
    return {
      scenario: `one From address over 1 vs 3 sign-in mailboxes, ${options.commandLatencyMs} ms per SMTP command`,
      messages: perRound * options.rounds,
      concurrency: options.concurrency,
      commandLatencyMs: options.commandLatencyMs,
      connectionsPerMailbox: options.connectionsPerMailbox,
      singlePerSecond: round(singlePerSecond, 1),
      pooledPerSecond: round(pooledPerSecond, 1),
      poolRatio: round(pooledPerSecond / singlePerSecond, 3),
      pooledDeliveredByMailbox: Object.fromEntries(
        poolScenario.pooledSignIn.map((mailbox) => [
          mailbox,
          (after.deliveredByUser[mailbox] ?? 0) - (before.deliveredByUser[mailbox] ?? 0),
        ]),
      ),
      peakConnectionsPerMailbox: Math.max(
        0,
        ...signIn.map((mailbox) => after.peakConnectionsByUser[mailbox] ?? 0),
      ),
    };
  } finally {
    runtime.close();
  }
}
