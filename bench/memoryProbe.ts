// Peak memory of one side, in a fresh process: warm the pools, then `BENCH_CONCURRENCY` sends with a 1 MB
// attachment all at once. Each request carries its own body (the relay) or its own attachment buffer (bare),
// as separate requests would. Prints one JSON line.
import { trustCertificate } from '../test/peers/testCertificate.ts';
import { createMessageFactory } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';
import { createBareSide, createRelaySide, runLoad } from './sides.ts';

const peers = JSON.parse(process.env.BENCH_PEERS ?? '{}') as PeersReady;
const side = process.argv[2];
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? '200');
const mailboxes = Number(process.env.BENCH_MAILBOXES ?? '5');
trustCertificate(peers.cert);

const options = { peers, mailboxes, callers: mailboxes, connectionsPerMailbox: 3, ownCopies: true };
const load = side === 'relay' ? await createRelaySide(options) : createBareSide(options);
const messages = createMessageFactory({ name: '1 MB', bodyBytes: 10_240, attachmentBytes: 1_048_576 });
await runLoad(load, messages, mailboxes * 3, mailboxes * 3, 0);
globalThis.gc?.();
const baselineRss = process.memoryUsage().rss;
let sampledPeak = baselineRss;
const sampler = setInterval(() => {
  sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss);
}, 5);
const result = await runLoad(load, messages, concurrency, concurrency, 1000);
clearInterval(sampler);
load.close();
console.log(
  JSON.stringify({
    side,
    concurrency,
    sent: result.messages,
    baselineRss,
    peakRss: Math.max(sampledPeak, process.resourceUsage().maxRSS * 1024),
  }),
);
process.exit(0);
