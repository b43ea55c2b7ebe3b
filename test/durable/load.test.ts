import { afterAll, beforeAll, expect, it } from 'vitest';
import { createQueueListener } from '../../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Load, bounded and on loopback only: 5,000 queued messages over 5 sender mailboxes while the SMTP server
 * refuses 5% of messages with 451 (seeded). Every message must be delivered exactly once, no mailbox may
 * hold more than 3 connections at once, and no mailbox may send more than its configured rate in any 60 s.
 * The rate is set high (3,000/min) so the run takes seconds, not the hours 30/min would need.
 */
const MESSAGES = 5_000;
const MAILBOXES = ['load1', 'load2', 'load3', 'load4', 'load5'].map((name) => `${name}@notify.contoso.com`);
const RATE_PER_MINUTE = 3_000;
const alertsHeaders = { 'x-relay-key': 'caller-key-alerts-0123456789', prefer: 'respond-async' };

let azurite: Azurite;
let harness: RelayHarness;

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
      RELAY_QUEUE_MAX_ATTEMPTS: '10',
      RELAY_MAILBOX_RATE_PER_MINUTE: String(RATE_PER_MINUTE),
    },
  });
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

/** A small seeded generator (mulberry32), so the 5% of failures fall the same way on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

it(`delivers ${MESSAGES} queued messages over 5 mailboxes exactly once, within the limits, despite 5% transient failures`, async () => {
  harness.smtp.setTransientFailureRate(0.05, seeded(4));
  const handler = bindHttp(send, harness.runtime);
  const started = Date.now();

  const ids: string[] = [];
  for (let offset = 0; offset < MESSAGES; offset += 100) {
    const answers = await Promise.all(
      Array.from({ length: Math.min(100, MESSAGES - offset) }, async (_, index) => {
        const number = offset + index;
        const { context } = capturingContext();
        const body = {
          from: MAILBOXES[number % MAILBOXES.length],
          to: 'ops@contoso.com',
          subject: `load-${number}`,
          text: `message ${number}`,
        };
        return handler(jsonRequest('http://localhost:7071/api/send', body, alertsHeaders), context);
      }),
    );
    for (const answer of answers) {
      expect(answer.status).toBe(202);
      ids.push((answer.jsonBody as { id: string }).id);
    }
  }
  const acceptedIn = Date.now() - started;

  const driver = createQueueListener({
    functionName: 'sendQueued',
    queue: harness.runtime.storage.sendQueue,
    poisonQueue: harness.runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, harness.runtime),
    // Azurite's in-memory queue scans every message on each receive, so fewer, larger receives (32, the
    // host's maximum batchSize) keep the emulator from being the bottleneck. host.json keeps 8/4.
    settings: {
      visibilityTimeoutSeconds: 0,
      maxPollingIntervalSeconds: 0.05,
      batchSize: 32,
      newBatchThreshold: 16,
    },
  });
  await driver.runUntil(async () => {
    if (harness.smtp.messages.length < MESSAGES) return false;
    const queue = await harness.runtime.storage.sendQueue.getProperties();
    return queue.approximateMessagesCount === 0;
  }, 200_000);
  const deliveredIn = Date.now() - started - acceptedIn;

  const subjects = new Map<string, number>();
  for (const message of harness.smtp.messages) {
    const subject = /^Subject: (load-\d+)\r?$/m.exec(message.raw.toString('latin1'))?.[1] ?? '?';
    subjects.set(subject, (subjects.get(subject) ?? 0) + 1);
  }
  const duplicates = [...subjects.values()].filter((count) => count > 1).length;
  const statuses = await Promise.all(
    ids
      .slice(0, 200)
      .map(async (id) => (await harness.runtime.sendQueue.statuses.get('alerts-app', id))?.status.state),
  );

  // Per mailbox: the most messages that started in any 60 s window (sliding, over server arrival times).
  const peakPerMinute = new Map<string, number>();
  for (const mailbox of MAILBOXES) {
    const times = harness.smtp.messages
      .filter((message) => message.authUser === mailbox)
      .map((message) => message.receivedAt)
      .sort((a, b) => a - b);
    let peak = 0;
    let start = 0;
    for (let end = 0; end < times.length; end += 1) {
      while ((times[end] ?? 0) - (times[start] ?? 0) >= 60_000) start += 1;
      peak = Math.max(peak, end - start + 1);
    }
    peakPerMinute.set(mailbox, peak);
  }

  const peakConnections = Object.fromEntries(harness.smtp.peakOpenConnectionsByUser);
  process.stdout.write(
    `\nload: accepted ${ids.length} in ${acceptedIn} ms, delivered ${harness.smtp.messages.length} (${subjects.size} distinct, ${duplicates} duplicates) in ${deliveredIn} ms; ` +
      `451s injected ${harness.smtp.injectedTransientFailures}; handler invocations ${driver.stats.invocations}, max concurrent ${driver.stats.maxConcurrent}; ` +
      `peak connections per mailbox ${JSON.stringify(peakConnections)}; peak messages in any 60 s per mailbox ${JSON.stringify(Object.fromEntries(peakPerMinute))}\n`,
  );

  expect(ids).toHaveLength(MESSAGES);
  expect(harness.smtp.messages).toHaveLength(MESSAGES);
  expect(subjects.size).toBe(MESSAGES);
  expect(duplicates).toBe(0);
  expect(harness.smtp.injectedTransientFailures).toBeGreaterThan(100);
  expect(statuses.every((state) => state === 'sent')).toBe(true);
  for (const mailbox of MAILBOXES) {
    expect(harness.smtp.peakOpenConnectionsByUser.get(mailbox)).toBeLessThanOrEqual(3);
    expect(peakPerMinute.get(mailbox)).toBeLessThanOrEqual(RATE_PER_MINUTE);
  }
}, 240_000);
