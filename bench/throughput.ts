import type { MessageFactory } from './messages.ts';
import type { Peers } from './peers.ts';
import { type LoadResult, runLoad, type Side } from './sides.ts';
import { percentile, round } from './stats.ts';

/**
 * One scenario: both sides warm up (the relay's warm-up is a burst of concurrent first sends, the cold
 * path), then send `messages` each in `rounds` alternating rounds, so drift of the machine (CPU frequency,
 * other load) falls on both sides alike.
 */
export interface ScenarioOptions {
  /** How the tracked figures name it (bench/report.ts): 10kb, 10kb_latency, 1mb_json, 1mb_raw. */
  id: string;
  name: string;
  messages: number;
  rounds: number;
  concurrency: number;
  commandLatencyMs: number;
  factory: MessageFactory;
}

export interface ScenarioResult {
  id: string;
  scenario: string;
  messages: number;
  concurrency: number;
  commandLatencyMs: number;
  relayPerSecond: number;
  barePerSecond: number;
  throughputRatio: number;
  /** Null where the relay's own share cannot be told apart (raw MIME: the client's time includes the upload). */
  addedP50Ms: number | null;
  addedP99Ms: number | null;
  relayLatencyP50Ms: number;
  relayLatencyP99Ms: number;
  bareLatencyP50Ms: number;
  bareLatencyP99Ms: number;
  /** Warm-up included (the scenario's first sends), and then the measured rounds alone. */
  tokenRequestsPer1000: number;
  tokenRequestsPer1000Warm: number;
  vaultReadsPer1000: number;
  vaultReadsPer1000Warm: number;
  coldBurst: { concurrentFirstSends: number; tokenRequests: number; vaultReads: number };
}

let nextIndex = 0;

export async function runScenario(
  options: ScenarioOptions,
  relay: Side,
  bare: Side,
  peers: Peers,
): Promise<ScenarioResult> {
  await peers.setCommandLatency(options.commandLatencyMs);
  const beforeWarmUp = await peers.stats();
  await runLoad(relay, options.factory, options.concurrency, options.concurrency, nextIndex);
  nextIndex += options.concurrency;
  const afterWarmUp = await peers.stats();
  await runLoad(bare, options.factory, options.concurrency, options.concurrency, nextIndex);
  nextIndex += options.concurrency;

  const relayRuns: LoadResult[] = [];
  const bareRuns: LoadResult[] = [];
  const perRound = Math.max(1, Math.floor(options.messages / options.rounds));
  const beforeRounds = await peers.stats();
  for (let roundIndex = 0; roundIndex < options.rounds; roundIndex += 1) {
    const order = roundIndex % 2 === 0 ? [relay, bare] : [bare, relay];
    for (const side of order) {
      const result = await runLoad(side, options.factory, perRound, options.concurrency, nextIndex);
      nextIndex += perRound;
      (side === relay ? relayRuns : bareRuns).push(result);
    }
  }
  const afterRounds = await peers.stats();
  const delivered = afterRounds.delivered - beforeRounds.delivered;
  const sent = perRound * options.rounds * 2;
  if (delivered !== sent) throw new Error(`the SMTP peer received ${delivered} of ${sent} messages`);

  const total = (runs: LoadResult[]) => ({
    messages: runs.reduce((sum, run) => sum + run.messages, 0),
    wallMs: runs.reduce((sum, run) => sum + run.wallMs, 0),
    latencies: runs.flatMap((run) => run.latencies),
    added: runs.flatMap((run) => run.added),
  });
  const relayTotal = total(relayRuns);
  const bareTotal = total(bareRuns);
  const relayPerSecond = (relayTotal.messages / relayTotal.wallMs) * 1000;
  const barePerSecond = (bareTotal.messages / bareTotal.wallMs) * 1000;
  const relayMessages = relayTotal.messages + options.concurrency;
  return {
    id: options.id,
    scenario: options.name,
    messages: relayTotal.messages,
    concurrency: options.concurrency,
    commandLatencyMs: options.commandLatencyMs,
    relayPerSecond: round(relayPerSecond, 1),
    barePerSecond: round(barePerSecond, 1),
    throughputRatio: round(relayPerSecond / barePerSecond, 3),
    addedP50Ms: relayTotal.added.length === 0 ? null : round(percentile(relayTotal.added, 0.5), 3),
    addedP99Ms: relayTotal.added.length === 0 ? null : round(percentile(relayTotal.added, 0.99), 3),
    relayLatencyP50Ms: round(percentile(relayTotal.latencies, 0.5)),
    relayLatencyP99Ms: round(percentile(relayTotal.latencies, 0.99)),
    bareLatencyP50Ms: round(percentile(bareTotal.latencies, 0.5)),
    bareLatencyP99Ms: round(percentile(bareTotal.latencies, 0.99)),
    // Everything the relay asked of the identity provider and Key Vault in this scenario, warm-up included.
    tokenRequestsPer1000: round(
      ((afterRounds.tokenRequests - beforeWarmUp.tokenRequests) / relayMessages) * 1000,
      2,
    ),
    tokenRequestsPer1000Warm: round(
      ((afterRounds.tokenRequests - beforeRounds.tokenRequests) / relayTotal.messages) * 1000,
      2,
    ),
    vaultReadsPer1000: round(((afterRounds.vaultReads - beforeWarmUp.vaultReads) / relayMessages) * 1000, 2),
    vaultReadsPer1000Warm: round(
      ((afterRounds.vaultReads - beforeRounds.vaultReads) / relayTotal.messages) * 1000,
      2,
    ),
    coldBurst: {
      concurrentFirstSends: options.concurrency,
      tokenRequests: afterWarmUp.tokenRequests - beforeWarmUp.tokenRequests,
      vaultReads: afterWarmUp.vaultReads - beforeWarmUp.vaultReads,
    },
  };
}
