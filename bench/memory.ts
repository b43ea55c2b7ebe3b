import { runNodeScript } from './child.ts';
import type { PeersReady } from './peerProtocol.ts';
import { megabytes } from './stats.ts';

/**
 * Peak RSS of each side for `concurrency` simultaneous sends with a 1 MB attachment (bench/memoryProbe.ts),
 * each side in its own fresh process so that each peak is its own: the relay given JSON, the relay given
 * raw MIME over HTTP, bare nodemailer with a message object, bare nodemailer with the raw MIME stream.
 */
export interface MemoryResult {
  concurrentSends: number;
  relayPeakRssMb: number;
  relayBaselineRssMb: number;
  rawPeakRssMb: number;
  rawBaselineRssMb: number;
  barePeakRssMb: number;
  bareBaselineRssMb: number;
  bareRawPeakRssMb: number;
  bareRawBaselineRssMb: number;
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
  const probe = (side: string) => runNodeScript<ProbeOutput>('./memoryProbe.ts', [side], env);
  const relay = await probe('relay');
  const raw = await probe('raw');
  const bare = await probe('bare');
  const bareRaw = await probe('bare-raw');
  return {
    concurrentSends: concurrency,
    relayPeakRssMb: megabytes(relay.peakRss),
    relayBaselineRssMb: megabytes(relay.baselineRss),
    rawPeakRssMb: megabytes(raw.peakRss),
    rawBaselineRssMb: megabytes(raw.baselineRss),
    barePeakRssMb: megabytes(bare.peakRss),
    bareBaselineRssMb: megabytes(bare.baselineRss),
    bareRawPeakRssMb: megabytes(bareRaw.peakRss),
    bareRawBaselineRssMb: megabytes(bareRaw.baselineRss),
  };
}
