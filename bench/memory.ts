import { runNodeScript } from './child.ts';
import type { PeersReady } from './peerProtocol.ts';
import { megabytes } from './stats.ts';

/** Peak RSS of each side for `concurrency` simultaneous sends with a 1 MB attachment (bench/memoryProbe.ts). */
export interface MemoryResult {
  concurrentSends: number;
  relayPeakRssMb: number;
  relayBaselineRssMb: number;
  barePeakRssMb: number;
  bareBaselineRssMb: number;
}

interface ProbeOutput {
  baselineRss: number;
  peakRss: number;
  sent: number;
}

export async function measureMemory(
  peers: PeersReady,
  concurrency: number,
  mailboxes: number,
): Promise<MemoryResult> {
  const env = {
    ...process.env,
    BENCH_PEERS: JSON.stringify(peers),
    BENCH_CONCURRENCY: String(concurrency),
    BENCH_MAILBOXES: String(mailboxes),
  };
  const relay = await runNodeScript<ProbeOutput>('./memoryProbe.ts', ['relay'], env);
  const bare = await runNodeScript<ProbeOutput>('./memoryProbe.ts', ['bare'], env);
  return {
    concurrentSends: concurrency,
    relayPeakRssMb: megabytes(relay.peakRss),
    relayBaselineRssMb: megabytes(relay.baselineRss),
    barePeakRssMb: megabytes(bare.peakRss),
    bareBaselineRssMb: megabytes(bare.baselineRss),
  };
}
