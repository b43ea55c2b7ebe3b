// The relay in a fresh process for the hostile JSON bodies (bench/hostile.ts): the development host serving
// POST /api/send on a runtime wired to the peers, one least-privileged caller. Between `measure` and `read`
// it records the event loop's worst delay with perf_hooks' monitorEventLoopDelay (1 ms resolution) and, as
// a cross-check, the largest gap between the ticks of a 1 ms interval; and the RSS it grew by: its peak in
// that window (getrusage's lifetime peak when that rose meanwhile, else the largest RSS the ticks saw) over
// the RSS when measuring began. It talks over the fork IPC channel.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { hashCallerKey } from '../shared/callers.ts';
import { trustCertificate } from '../test/peers/testCertificate.ts';
import type { PeersReady } from './peerProtocol.ts';
import { createBenchRuntime, startSendHost } from './sides.ts';

export type StallCommand = { type: 'measure' } | { type: 'read' } | { type: 'close' };
export type StallReply =
  | { type: 'ready'; origin: string; maxMessageBytes: number }
  | { type: 'measuring' }
  | { type: 'stall'; worstDelayMs: number; worstIntervalGapMs: number; rssGrowthBytes: number }
  | { type: 'closed' };

const peers = JSON.parse(process.env.BENCH_PEERS ?? '{}') as PeersReady;
trustCertificate(peers.cert);
const runtime = await createBenchRuntime(peers, 3, {
  RELAY_CALLERS: JSON.stringify([
    {
      name: 'least-privileged',
      keySha256: hashCallerKey(process.env.BENCH_CALLER_KEY ?? ''),
      senders: [process.env.BENCH_SENDER ?? ''],
    },
  ]),
});
const host = await startSendHost(runtime);
const reply = (message: StallReply) => process.send?.(message);

let histogram: ReturnType<typeof monitorEventLoopDelay> | undefined;
let ticker: NodeJS.Timeout | undefined;
let worstGap = 0;
let rssAtStart = 0;
let lifetimePeakAtStart = 0;
let sampledPeak = 0;
const lifetimePeakRss = () => process.resourceUsage().maxRSS * 1024;

process.on('message', (command: StallCommand) => {
  if (command.type === 'measure') {
    rssAtStart = process.memoryUsage().rss;
    sampledPeak = rssAtStart;
    lifetimePeakAtStart = lifetimePeakRss();
    histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    worstGap = 0;
    let last = performance.now();
    ticker = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
      sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss);
    }, 1);
    reply({ type: 'measuring' });
  }
  if (command.type === 'read') {
    histogram?.disable();
    clearInterval(ticker);
    const lifetimePeak = lifetimePeakRss();
    const peak = lifetimePeak > lifetimePeakAtStart ? lifetimePeak : sampledPeak;
    reply({
      type: 'stall',
      worstDelayMs: (histogram?.max ?? 0) / 1e6,
      worstIntervalGapMs: worstGap,
      rssGrowthBytes: Math.max(0, peak - rssAtStart),
    });
  }
  if (command.type === 'close') {
    Promise.all([host.close(), runtime.close()]).finally(() => {
      process.send?.({ type: 'closed' } satisfies StallReply, () => process.exit(0));
    });
  }
});

reply({ type: 'ready', origin: host.origin, maxMessageBytes: runtime.config.limits.maxMessageBytes });
