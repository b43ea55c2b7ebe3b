// Peak memory of one side, in a fresh process: warm the pools, then `BENCH_CONCURRENCY` sends with a 1 MB
// attachment all at once. Sides: `relay` (JSON bodies, each its own string, as separate requests have),
// `raw` (the relay receiving raw MIME streamed over HTTP; the client's part in this process is the shared
// template's chunks), `bare` (nodemailer with its own attachment buffer per message) and `bare-raw`
// (nodemailer sending the same raw MIME as a stream). Prints one JSON line.
import { trustCertificate } from '../test/peers/testCertificate.ts';
import { createMessageFactory } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';
import {
  createBareSide,
  createRawBareSide,
  createRawRelaySide,
  createRelaySide,
  runLoad,
  type Side,
} from './sides.ts';

const peers = JSON.parse(process.env.BENCH_PEERS ?? '{}') as PeersReady;
const side = process.argv[2];
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? '200');
const mailboxes = Number(process.env.BENCH_MAILBOXES ?? '5');
trustCertificate(peers.cert);

const options = { peers, mailboxes, callers: mailboxes, connectionsPerMailbox: 3, ownCopies: true };
async function sideOf(name: string | undefined): Promise<Side> {
  if (name === 'relay') return createRelaySide(options);
  if (name === 'raw') {
    const relay = await createRelaySide(options);
    const raw = await createRawRelaySide(options, relay.runtime);
    return { ...raw, close: async () => Promise.all([raw.close(), relay.close()]).then(() => undefined) };
  }
  if (name === 'bare') return createBareSide(options);
  if (name === 'bare-raw') return createRawBareSide(options);
  throw new Error(`unknown side: ${name}`);
}
const load = await sideOf(side);
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
await load.close();
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
