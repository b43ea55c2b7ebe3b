import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import type { ColdStartResult } from './coldStart.ts';
import type { HostileResult } from './hostile.ts';
import type { LimitsResult } from './limits.ts';
import type { MemoryResult } from './memory.ts';
import type { PoolResult } from './pool.ts';
import { megabytes } from './stats.ts';
import type { ScenarioResult } from './throughput.ts';

/** The benchmark's output: a table for people, then the same figures as JSON for tools. */
export interface Machine {
  node: string;
  nproc: number;
  cpuModel: string;
  memoryMb: number;
  platform: string;
}

export async function describeMachine(): Promise<Machine> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return {
    node: process.version,
    nproc: availableParallelism(),
    cpuModel: model.trim(),
    memoryMb: megabytes(totalmem()),
    platform: `${process.platform} ${process.arch}`,
  };
}

export interface BenchReport {
  settings: Record<string, number | boolean | undefined>;
  scenarios: ScenarioResult[];
  pool?: PoolResult | undefined;
  limits?: LimitsResult | undefined;
  memory?: MemoryResult | undefined;
  hostile?: HostileResult | undefined;
  coldStart?: ColdStartResult | undefined;
  machine: Machine;
}

/**
 * The figures tracked run to run (issue 14), flat at the top of bench/results/latest.json; a figure whose
 * scenario was skipped is left out rather than written as a number.
 */
export function trackedFigures(result: BenchReport): Record<string, number> {
  const ratio = (id: string) => result.scenarios.find((scenario) => scenario.id === id)?.throughputRatio;
  const figures: Record<string, number | undefined> = {
    ratio_10kb: ratio('10kb'),
    ratio_10kb_latency20ms: ratio('10kb_latency'),
    ratio_1mb_json: ratio('1mb_json'),
    ratio_1mb_raw: ratio('1mb_raw'),
    rss_mb_200x1mb_json: result.memory?.relayPeakRssMb,
    rss_mb_200x1mb_raw: result.memory?.rawPeakRssMb,
    rss_mb_200x1mb_bare: result.memory?.barePeakRssMb,
    rss_mb_200x1mb_bare_raw: result.memory?.bareRawPeakRssMb,
    worst_stall_ms_hostile_json: result.hostile?.worstStallMs,
    cold_start_overhead_ms_keyvault: result.coldStart?.keyVaultOverheadMs,
    cold_start_overhead_ms_local_secret: result.coldStart?.overheadMs,
  };
  return Object.fromEntries(
    Object.entries(figures).filter((entry): entry is [string, number] => typeof entry[1] === 'number'),
  );
}

const verdict = (met: boolean) => (met ? 'ok' : 'MISSED');

export function report(result: BenchReport): void {
  const { scenarios, pool, limits, memory, hostile, coldStart, machine } = result;
  console.log(
    `\nm365-mail-relay benchmark: ${machine.node}, ${machine.nproc} cores (${machine.cpuModel}), ${machine.platform}`,
  );
  if (scenarios.length > 0) {
    console.table(
      Object.fromEntries(
        scenarios.map((scenario) => [
          scenario.scenario,
          {
            'relay msg/s': scenario.relayPerSecond,
            'bare msg/s': scenario.barePerSecond,
            'ratio relay/bare': scenario.throughputRatio,
            'added p50 ms': scenario.addedP50Ms,
            'added p99 ms': scenario.addedP99Ms,
            'relay p50/p99 ms': `${scenario.relayLatencyP50Ms} / ${scenario.relayLatencyP99Ms}`,
            'bare p50/p99 ms': `${scenario.bareLatencyP50Ms} / ${scenario.bareLatencyP99Ms}`,
            'token req /1000': scenario.tokenRequestsPer1000,
            'KV reads /1000 (warm)': `${scenario.vaultReadsPer1000} (${scenario.vaultReadsPer1000Warm})`,
          },
        ]),
      ),
    );
  }
  const [first] = scenarios;
  const tenKb = scenarios.find((scenario) => scenario.id === '10kb');
  const tenKbLatency = scenarios.find((scenario) => scenario.id === '10kb_latency');
  const rawMb = scenarios.find((scenario) => scenario.id === '1mb_raw');
  const rows: [string, string, string, string][] = [];
  if (tenKb !== undefined) {
    rows.push([
      'throughput ratio, 10 KB',
      String(tenKb.throughputRatio),
      '>= 0.90 (aim 0.95)',
      verdict(tenKb.throughputRatio >= 0.9),
    ]);
    rows.push([
      'added latency p50, 10 KB',
      `${tenKb.addedP50Ms} ms`,
      '<= 2 ms',
      verdict((tenKb.addedP50Ms ?? Number.NaN) <= 2),
    ]);
    rows.push([
      'added latency p99, 10 KB',
      `${tenKb.addedP99Ms} ms`,
      '<= 10 ms',
      verdict((tenKb.addedP99Ms ?? Number.NaN) <= 10),
    ]);
  }
  if (tenKbLatency !== undefined) {
    rows.push([
      `throughput ratio, 10 KB, ${tenKbLatency.commandLatencyMs} ms per SMTP command`,
      String(tenKbLatency.throughputRatio),
      '>= 0.95 (no regression)',
      verdict(tenKbLatency.throughputRatio >= 0.95),
    ]);
  }
  if (rawMb !== undefined) {
    rows.push([
      'throughput ratio, 1 MB raw MIME (vs bare nodemailer sending the raw stream)',
      `${rawMb.throughputRatio} (${rawMb.relayPerSecond} vs ${rawMb.barePerSecond} msg/s)`,
      '>= 0.95',
      verdict(rawMb.throughputRatio >= 0.95),
    ]);
  }
  if (first !== undefined) {
    rows.push([
      `token requests, ${first.coldBurst.concurrentFirstSends} concurrent first sends`,
      String(first.coldBurst.tokenRequests),
      '1 (one per app per token lifetime)',
      verdict(first.coldBurst.tokenRequests === 1),
    ]);
    const warmReads = scenarios.reduce((sum, scenario) => sum + scenario.vaultReadsPer1000Warm, 0);
    rows.push([
      'Key Vault reads on the warm send path',
      `${warmReads} per 1000`,
      '0',
      verdict(warmReads === 0),
    ]);
  }
  if (pool !== undefined) {
    rows.push([
      `sender pool of 3 vs 1 sign-in mailbox (${pool.commandLatencyMs} ms per command)`,
      `${pool.poolRatio}x (${pool.pooledPerSecond} vs ${pool.singlePerSecond} msg/s, peak ${pool.peakConnectionsPerMailbox} sessions per mailbox)`,
      '~3x, <= 3 sessions',
      verdict(pool.poolRatio >= 2.5 && pool.peakConnectionsPerMailbox <= pool.connectionsPerMailbox),
    ]);
  }
  if (limits !== undefined) {
    rows.push([
      `shared limits, synchronous sends: storage vs memory (${limits.syncMailboxes} mailboxes)`,
      `${limits.syncRatioStorageVsMemory}x (${limits.syncStoragePerSecond} vs ${limits.syncMemoryPerSecond} msg/s)`,
      '(cost of sharing the limits)',
      '-',
    ]);
    rows.push([
      'storage operations per synchronous send (schedule + session slots)',
      `${limits.storageOpsPerSyncMessage} (${limits.scheduleOpsPerSyncMessage} + ${limits.sessionSlotOpsPerSyncMessage}; ${limits.storageRequestsPerSyncMessage} requests)`,
      '<= 1 (one conditional write per start, group-committed)',
      verdict(limits.storageOpsPerSyncMessage <= 1),
    ]);
    rows.push([
      `queued backlog of ${limits.drainMessages}, ${limits.drainMailboxes} mailboxes at ${limits.drainRatePerMinute}/min`,
      `${limits.drainFractionOfMax} of max (${limits.drainPerSecond} of ${limits.drainMaxPerSecond} msg/s, ${limits.drainSeconds} s; accepted at ${limits.acceptPerSecond}/s)`,
      '>= 0.9 (drains at the rate)',
      verdict(limits.drainFractionOfMax >= 0.9),
    ]);
    rows.push([
      'queue deliveries per queued message',
      String(limits.drainDeliveriesPerMessage),
      '1 (each delivered once, at its start)',
      verdict(limits.drainDeliveriesPerMessage <= 1.05),
    ]);
    rows.push([
      'storage operations per queued message (limits; all requests)',
      `${limits.storageOpsPerQueuedMessage} (${limits.storageRequestsPerQueuedMessage} requests incl. queue, status, polls)`,
      '(measured)',
      '-',
    ]);
  }
  if (memory !== undefined) {
    rows.push([
      `peak RSS, ${memory.concurrentSends} concurrent 1 MB sends as JSON`,
      `${memory.relayPeakRssMb} MB (bare ${memory.barePeakRssMb} MB)`,
      '< 300 MB',
      verdict(memory.relayPeakRssMb < 300),
    ]);
    rows.push([
      `peak RSS, ${memory.concurrentSends} concurrent 1 MB sends as raw MIME`,
      `${memory.rawPeakRssMb} MB (bare raw stream ${memory.bareRawPeakRssMb} MB)`,
      '<= 250 MB',
      verdict(memory.rawPeakRssMb <= 250),
    ]);
  }
  if (hostile !== undefined) {
    const worst = hostile.shapes.reduce((a, b) => (b.worstStallMs > a.worstStallMs ? b : a));
    rows.push([
      `worst event-loop stall, hostile JSON bodies (${hostile.bodyBytes} bytes)`,
      `${hostile.worstStallMs} ms (${worst.shape}: ${worst.status} ${worst.code ?? ''}, RSS +${worst.rssGrowthMb} MB)`,
      '<= 100 ms',
      verdict(hostile.worstStallMs <= 100),
    ]);
  }
  if (coldStart !== undefined) {
    rows.push([
      'cold start overhead',
      `${coldStart.overheadMs} ms (${coldStart.relayFirstResponseMs} vs ${coldStart.bareFirstResponseMs})`,
      '<= 150 ms',
      verdict(coldStart.overheadMs <= 150),
    ]);
    rows.push([
      'cold start CPU overhead',
      `${coldStart.cpuOverheadMs} ms (${coldStart.relayCpuMs} vs ${coldStart.bareCpuMs})`,
      '(steadier view of the above)',
      verdict(coldStart.cpuOverheadMs <= 150),
    ]);
    rows.push([
      'cold start overhead with Key Vault configured (as in production)',
      `${coldStart.keyVaultOverheadMs} ms (${coldStart.keyVaultFirstResponseMs} vs ${coldStart.bareFirstResponseMs}; CPU +${coldStart.keyVaultCpuOverheadMs} ms)`,
      '<= 80 ms',
      verdict(coldStart.keyVaultOverheadMs <= 80),
    ]);
  }
  console.table(rows.map(([measure, value, target, met]) => ({ measure, value, target, met })));
  if (hostile !== undefined) {
    console.table(
      Object.fromEntries(
        hostile.shapes.map((shape) => [
          shape.shape,
          {
            bytes: shape.bodyBytes,
            answer: `${shape.status} ${shape.code ?? ''}`,
            'worst stall ms': shape.worstStallMs,
            'RSS growth MB': shape.rssGrowthMb,
          },
        ]),
      ),
    );
  }
  const tracked = trackedFigures(result);
  console.log('Tracked figures:', JSON.stringify(tracked));
  if (result.settings.smoke === true) {
    console.log('Smoke run: it proves the script works; with so few messages the figures mean little.');
  }
  console.log(JSON.stringify({ ...tracked, ...result }, null, 2));
  // A full run's figures are kept where they can be compared run to run; a smoke run's mean little.
  if (result.settings.smoke !== true) {
    const latest = new URL('results/latest.json', import.meta.url);
    mkdirSync(new URL('.', latest), { recursive: true });
    writeFileSync(
      latest,
      `${JSON.stringify({ measuredAt: new Date().toISOString(), ...tracked, ...result }, null, 2)}\n`,
    );
    console.log(`Figures written to bench/results/latest.json`);
  }
}
