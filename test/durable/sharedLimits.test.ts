import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceivedMessage } from '../peers/smtpPeer.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import { type RelayHarness, startRelayHarness } from '../support/relayHarness.ts';
import { type RelayInstance, type RelayInstances, startRelayInstances } from '../support/relayInstances.ts';

/**
 * Exchange's per-mailbox limits with three relay instances, each its own process (the built app served by
 * the development host), against one Azurite and one SMTP peer that counts sessions and messages per
 * signed-in mailbox over all of them and answers a 4th concurrent session with 432 4.3.2, as Exchange
 * does. What is checked is what Exchange would see.
 */
const alertsKey = 'caller-key-alerts-0123456789';

let azurite: Azurite;
let harness: RelayHarness;

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({ smtp: { maxSessionsPerUser: 3 } });
}, 60_000);

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

function instanceSettings(settings: Record<string, string>): Record<string, string> {
  return {
    ...harness.settings,
    RELAY_STORAGE_CONNECTION: azurite.connectionString,
    RELAY_STATE_STORE: 'storage',
    // The timer is not under test here.
    RELAY_TOKEN_REFRESH_SCHEDULE: '0 0 0 1 1 *',
    ...settings,
  };
}

async function send(
  instance: RelayInstance,
  message: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> {
  const response = await fetch(`${instance.origin}/api/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-relay-key': alertsKey, ...headers },
    body: JSON.stringify(message),
  });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    retryAfter: response.headers.get('retry-after'),
  };
}

async function stateOf(instance: RelayInstance, id: string): Promise<string> {
  const response = await fetch(`${instance.origin}/api/send/${id}`, {
    headers: { 'x-relay-key': alertsKey },
  });
  return ((await response.json()) as { state: string }).state;
}

async function waitUntil(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const subjectOf = (message: ReceivedMessage) => /^Subject: (.*)$/m.exec(message.raw.toString())?.[1] ?? '';
const from = (address: string) => (message: ReceivedMessage) => message.authUser === address;

/** The most messages the server accepted within any 60 seconds. */
function worstMinute(messages: ReceivedMessage[]): number {
  const times = messages.map((message) => message.receivedAt).sort((a, b) => a - b);
  let worst = 0;
  for (let first = 0, last = 0; last < times.length; last += 1) {
    while ((times[last] ?? 0) - (times[first] ?? 0) >= 60_000) first += 1;
    worst = Math.max(worst, last - first + 1);
  }
  return worst;
}

describe('a queued backlog for one mailbox, accepted by three instances', () => {
  const mailbox = 'backlog@notify.contoso.com';
  const count = 40;
  const ratePerMinute = 120;
  let relays: RelayInstances;

  beforeAll(async () => {
    relays = await startRelayInstances(
      3,
      instanceSettings({ RELAY_MAILBOX_RATE_PER_MINUTE: String(ratePerMinute) }),
    );
  }, 60_000);

  afterAll(async () => {
    await relays?.stop();
  });

  it('delivers each message once, at the rate, within 3 sessions, without a 432', async () => {
    const { instances } = relays;
    const accepted = await Promise.all(
      Array.from({ length: count }, (_, index) =>
        send(
          instances[index % 3] as RelayInstance,
          { from: mailbox, to: 'ops@contoso.com', subject: `backlog ${index}`, text: 'queued' },
          { prefer: 'respond-async' },
        ),
      ),
    );
    expect(accepted.map((answer) => answer.status)).toEqual(Array(count).fill(202));
    const ids = accepted.map((answer) => answer.body.id as string);

    await waitUntil(
      async () => harness.smtp.messages.filter(from(mailbox)).length >= count,
      60_000 + (count * 60_000) / ratePerMinute,
      `${count} messages at the SMTP peer`,
    );
    await waitUntil(
      async () => {
        const states = await Promise.all(
          ids.map((id, index) => stateOf(instances[index % 3] as RelayInstance, id)),
        );
        return states.every((state) => state === 'sent');
      },
      20_000,
      'every status sent',
    );
    await waitUntil(
      () => instances.reduce((sum, instance) => sum + instance.queueDeliveries(), 0) >= count,
      10_000,
      'every delivery logged',
    );

    const delivered = harness.smtp.messages.filter(from(mailbox));
    expect(delivered.map(subjectOf).sort()).toEqual(
      Array.from({ length: count }, (_, index) => `backlog ${index}`).sort(),
    );
    const deliveries = instances.reduce((sum, instance) => sum + instance.queueDeliveries(), 0);
    const peakSessions = harness.smtp.peakOpenConnectionsByUser.get(mailbox) ?? 0;
    expect(peakSessions).toBeLessThanOrEqual(3);
    expect(harness.smtp.throttledLogins).toBe(0);
    expect(worstMinute(delivered)).toBeLessThanOrEqual(ratePerMinute);
    expect(deliveries / count).toBeLessThanOrEqual(1.2);
    const spanSeconds =
      (Math.max(...delivered.map((message) => message.receivedAt)) -
        Math.min(...delivered.map((message) => message.receivedAt))) /
      1000;
    process.stdout.write(
      `shared limits, 3 instances, ${count} queued at ${ratePerMinute}/min: peak sessions ${peakSessions}, 432 replies ${harness.smtp.throttledLogins}, worst 60 s window ${worstMinute(delivered)}, deliveries per message ${(deliveries / count).toFixed(2)}, drained in ${spanSeconds.toFixed(1)} s (at the rate: ${(((count - 1) * 60) / ratePerMinute).toFixed(1)} s)\n`,
    );
  }, 150_000);
});

describe('a synchronous burst over the rate, spread over three instances', () => {
  const mailbox = 'burst@notify.contoso.com';
  const ratePerMinute = 20;
  let relays: RelayInstances;

  beforeAll(async () => {
    relays = await startRelayInstances(
      3,
      instanceSettings({
        RELAY_MAILBOX_RATE_PER_MINUTE: String(ratePerMinute),
        RELAY_RATE_LIMIT_WAIT_SECONDS: '0',
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await relays?.stop();
  });

  it('sends exactly the rate and answers the rest 429 with the seconds until the minute frees', async () => {
    const { instances } = relays;
    const answers = await Promise.all(
      Array.from({ length: 36 }, (_, index) =>
        send(instances[index % 3] as RelayInstance, {
          from: mailbox,
          to: 'ops@contoso.com',
          subject: `burst ${index}`,
          text: 'now',
        }),
      ),
    );
    const sent = answers.filter((answer) => answer.status === 200);
    const limited = answers.filter((answer) => answer.status === 429);
    expect(sent).toHaveLength(ratePerMinute);
    expect(limited).toHaveLength(36 - ratePerMinute);
    for (const answer of limited) {
      expect((answer.body.error as { code: string }).code).toBe('mailbox_rate_limited');
      expect(Number(answer.retryAfter)).toBeGreaterThan(45);
      expect(Number(answer.retryAfter)).toBeLessThanOrEqual(63);
    }
    await harness.smtp.waitForMessages(harness.smtp.messages.length);
    expect(harness.smtp.messages.filter(from(mailbox))).toHaveLength(ratePerMinute);
    expect(harness.smtp.peakOpenConnectionsByUser.get(mailbox) ?? 0).toBeLessThanOrEqual(3);
    expect(harness.smtp.throttledLogins).toBe(0);
  }, 60_000);
});

describe('an instance that dies holding a session slot', () => {
  const mailbox = 'survivor@notify.contoso.com';
  let relays: RelayInstances;

  beforeAll(async () => {
    relays = await startRelayInstances(
      3,
      instanceSettings({
        RELAY_MAILBOX_RATE_PER_MINUTE: '600',
        // One session: while the dying instance holds it, nobody else may have one.
        RELAY_SMTP_MAX_CONNECTIONS: '1',
        RELAY_SMTP_TIMEOUT_SECONDS: '30',
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await relays?.stop();
  });

  it('frees the slot within the lease, and the others deliver every queued message exactly once', async () => {
    const [dying, ...survivors] = relays.instances as [RelayInstance, RelayInstance, RelayInstance];
    const before = harness.smtp.messages.length;
    // The dying instance logs in and then waits on a server that never answers MAIL FROM: it holds the slot.
    harness.smtp.stallNext(1);
    const stalled = send(dying, {
      from: mailbox,
      to: 'ops@contoso.com',
      subject: 'stalled',
      text: 'x',
    }).catch(() => undefined);
    await waitUntil(
      () => harness.smtp.authAttempts.some((attempt) => attempt.user === mailbox && attempt.accepted),
      20_000,
      'the dying instance logged in',
    );

    const killedAt = Date.now();
    await dying.kill('SIGKILL');
    await stalled;
    // Accepted after the death: a message the dead instance had itself taken off the queue would come
    // back only when the host's own invisibility ends (about 10 minutes; the closing note of issue 11).
    const ids: Array<{ id: string; instance: RelayInstance }> = [];
    for (let index = 0; index < 10; index += 1) {
      const instance = survivors[index % 2] as RelayInstance;
      const answer = await send(
        instance,
        { from: mailbox, to: 'ops@contoso.com', subject: `survivor ${index}`, text: 'queued' },
        { prefer: 'respond-async' },
      );
      expect(answer.status).toBe(202);
      ids.push({ id: answer.body.id as string, instance });
    }

    await waitUntil(
      () => harness.smtp.messages.slice(before).filter(from(mailbox)).length >= 10,
      60_000,
      'the survivors delivered the backlog',
    ).catch((error: Error) => {
      throw new Error(
        `${error.message}\n${survivors.map((instance) => instance.output().slice(-3000)).join('\n---\n')}`,
      );
    });
    const firstAfterKill = Math.min(
      ...harness.smtp.messages
        .slice(before)
        .filter(from(mailbox))
        .map((message) => message.receivedAt),
    );
    await waitUntil(
      async () =>
        (await Promise.all(ids.map(({ id, instance }) => stateOf(instance, id)))).every(
          (state) => state === 'sent',
        ),
      20_000,
      'every status sent',
    );
    const delivered = harness.smtp.messages.slice(before).filter(from(mailbox)).map(subjectOf);
    expect(delivered.sort()).toEqual(Array.from({ length: 10 }, (_, index) => `survivor ${index}`).sort());
    expect(harness.smtp.peakOpenConnectionsByUser.get(mailbox) ?? 0).toBeLessThanOrEqual(1);
    expect(harness.smtp.throttledLogins).toBe(0);
    process.stdout.write(
      `shared limits: first delivery ${((firstAfterKill - killedAt) / 1000).toFixed(1)} s after the slot holder was killed (lease 15 s)\n`,
    );
  }, 120_000);
});
