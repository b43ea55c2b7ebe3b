// npm run bench: the relay against bare nodemailer on loopback. See README "Performance".
import { parseArgs } from 'node:util';
import { trustCertificate } from '../test/peers/testCertificate.ts';
import { measureColdStart } from './coldStart.ts';
import { measureHostileJson } from './hostile.ts';
import { measureLimits } from './limits.ts';
import { measureMemory } from './memory.ts';
import { createMessageFactory } from './messages.ts';
import { startPeers } from './peers.ts';
import { measurePool } from './pool.ts';
import { describeMachine, report } from './report.ts';
import {
  benchIdentity,
  createBareSide,
  createRawBareSide,
  createRawRelaySide,
  createRelaySide,
} from './sides.ts';
import { runScenario, type ScenarioResult } from './throughput.ts';

const { values: flags } = parseArgs({
  options: {
    messages: { type: 'string' },
    'large-messages': { type: 'string' },
    rounds: { type: 'string' },
    concurrency: { type: 'string' },
    mailboxes: { type: 'string' },
    callers: { type: 'string' },
    latency: { type: 'string' },
    'memory-sends': { type: 'string' },
    'cold-starts': { type: 'string' },
    'pool-messages': { type: 'string' },
    'limits-messages': { type: 'string' },
    'hostile-bytes': { type: 'string' },
    'address-strings': { type: 'string' },
    smoke: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (flags.help) {
  console.log(`npm run bench -- [options]
  --messages N        10 KB messages per side (default 2000; smoke 60; 0 skips both 10 KB scenarios)
  --large-messages N  messages with a 1 MB attachment per side, as JSON and again as raw MIME
                      (default 200; smoke 10; 0 skips both)
  --rounds N          alternating rounds per scenario (default 4; smoke 2)
  --concurrency N     concurrent callers (default 50)
  --mailboxes N       sender mailboxes, one pool of 3 connections each (default 5)
  --callers N         caller keys configured in RELAY_CALLERS (default 10)
  --latency MS        SMTP command latency of the extra "remote server" scenario (default 20; 0 skips it)
  --memory-sends N    simultaneous 1 MB sends for the peak RSS probes (default 200; smoke 20; 0 skips them)
  --cold-starts N     fresh processes per side for cold start (default 7; smoke 1; 0 skips it)
  --pool-messages N   messages per side of the sender-pool scenario, 1 vs 3 sign-in mailboxes (default 600;
                      smoke 20; 0 skips it)
  --limits-messages N messages per side of the shared-limits scenario (storage vs memory, against Azurite)
                      and in its queued backlog (default 600; smoke 20; 0 skips it)
  --hostile-bytes N   size of the hostile JSON bodies (default: the relay's JSON body limit; smoke 262144;
                      0 skips them)
  --address-strings N address strings of 20,000 characters in the hostile address body (default 900;
                      smoke 20)
  --smoke             tiny run that proves the script works (CI)`);
  process.exit(0);
}

const smoke = flags.smoke;
const count = (value: string | undefined, fallback: number, smokeValue = fallback) => {
  if (value === undefined) return smoke ? smokeValue : fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`not a whole number: ${value}`);
  return parsed;
};
const settings = {
  smoke,
  messages: count(flags.messages, 2000, 60),
  largeMessages: count(flags['large-messages'], 200, 10),
  rounds: count(flags.rounds, 4, 2),
  concurrency: count(flags.concurrency, 50),
  mailboxes: count(flags.mailboxes, 5),
  callers: count(flags.callers, 10),
  latencyMs: count(flags.latency, 20, 5),
  memorySends: count(flags['memory-sends'], 200, 20),
  coldStarts: count(flags['cold-starts'], 7, 1),
  poolMessages: count(flags['pool-messages'], 600, 20),
  limitsMessages: count(flags['limits-messages'], 600, 20),
  // Undefined: as large as the relay lets in (its JSON body limit at the default message limit).
  hostileBytes:
    flags['hostile-bytes'] === undefined && !smoke ? undefined : count(flags['hostile-bytes'], 0, 262_144),
  addressStrings: count(flags['address-strings'], 900, 20),
  connectionsPerMailbox: 3,
};

// A broken script must fail CI, not hang it: the smoke run gives up after five minutes.
if (smoke) {
  setTimeout(() => {
    console.error('bench: the smoke run did not finish within 5 minutes');
    process.exit(1);
  }, 300_000).unref();
}

const peers = await startPeers(benchIdentity);
try {
  trustCertificate(peers.ready.cert);
  const sideOptions = {
    peers: peers.ready,
    mailboxes: settings.mailboxes,
    callers: settings.callers,
    connectionsPerMailbox: settings.connectionsPerMailbox,
  };
  const relay = await createRelaySide(sideOptions);
  const bare = createBareSide(sideOptions);
  // Raw MIME goes to the same relay runtime (the same token cache, pools and limits), over HTTP.
  const relayRaw = await createRawRelaySide(sideOptions, relay.runtime);
  const bareRaw = createRawBareSide(sideOptions);
  const small = createMessageFactory({ name: '10 KB', bodyBytes: 10_240, attachmentBytes: 0 });
  const large = createMessageFactory({
    name: '10 KB + 1 MB attachment',
    bodyBytes: 10_240,
    attachmentBytes: 1_048_576,
  });
  const scenarios: ScenarioResult[] = [];
  const common = { rounds: settings.rounds, concurrency: settings.concurrency };
  if (settings.messages > 0) {
    scenarios.push(
      await runScenario(
        {
          ...common,
          id: '10kb',
          name: '10 KB',
          messages: settings.messages,
          commandLatencyMs: 0,
          factory: small,
        },
        relay,
        bare,
        peers,
      ),
    );
  }
  if (settings.messages > 0 && settings.latencyMs > 0) {
    scenarios.push(
      await runScenario(
        {
          ...common,
          id: '10kb_latency',
          name: `10 KB, ${settings.latencyMs} ms per SMTP command`,
          messages: settings.messages,
          commandLatencyMs: settings.latencyMs,
          factory: small,
        },
        relay,
        bare,
        peers,
      ),
    );
  }
  if (settings.largeMessages > 0) {
    scenarios.push(
      await runScenario(
        {
          ...common,
          id: '1mb_json',
          name: large.shape.name,
          messages: settings.largeMessages,
          commandLatencyMs: 0,
          factory: large,
        },
        relay,
        bare,
        peers,
      ),
    );
    scenarios.push(
      await runScenario(
        {
          ...common,
          id: '1mb_raw',
          name: `${large.shape.name}, raw MIME streamed (bare: sendMail raw stream)`,
          messages: settings.largeMessages,
          commandLatencyMs: 0,
          factory: large,
        },
        relayRaw,
        bareRaw,
        peers,
      ),
    );
  }
  await relayRaw.close();
  bareRaw.close();
  relay.close();
  bare.close();
  const pool =
    settings.poolMessages > 0
      ? await measurePool(peers, {
          ...common,
          messages: settings.poolMessages,
          // A remote server, where the 3 connections per mailbox are what bounds it.
          commandLatencyMs: settings.latencyMs > 0 ? settings.latencyMs : 20,
          connectionsPerMailbox: settings.connectionsPerMailbox,
          factory: small,
        })
      : undefined;
  const limits =
    settings.limitsMessages > 0
      ? await measureLimits(peers, {
          ...common,
          messages: settings.limitsMessages,
          connectionsPerMailbox: settings.connectionsPerMailbox,
          factory: small,
        })
      : undefined;
  const memory =
    settings.memorySends > 0
      ? await measureMemory(peers.ready, settings.memorySends, settings.mailboxes)
      : undefined;
  const hostile =
    settings.hostileBytes === 0
      ? undefined
      : await measureHostileJson(peers.ready, {
          bodyBytes: settings.hostileBytes,
          addressStrings: settings.addressStrings,
          addressChars: 20_000,
        });
  const coldStart =
    settings.coldStarts > 0 ? await measureColdStart(peers.ready, small, settings.coldStarts) : undefined;
  report({
    settings,
    scenarios,
    pool,
    limits,
    memory,
    hostile,
    coldStart,
    machine: await describeMachine(),
  });
} finally {
  await peers.close();
}
