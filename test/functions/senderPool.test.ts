import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { status } from '../../functions/status.ts';
import type { StatusReport } from '../../shared/delegated/statusReport.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * A From address routed over a pool of sign-in mailboxes: Exchange counts its limits per signed-in mailbox,
 * so each member brings its own rate and connections. The SMTP peer counts per authenticated mailbox and,
 * like Exchange, refuses a 4th concurrent session with 432 4.3.2.
 */
const ratePerMinute = 10;
const pool = ['relay1@contoso.com', 'relay2@contoso.com', 'relay3@contoso.com'];
const solo = 'solo@contoso.com';
const spare = 'relay4@contoso.com';
const unconnected = 'unconnected@contoso.com';
const callerKey = 'caller-key-notify-0123456789';

let harness: RelayHarness;

async function post(from: string) {
  const { context } = capturingContext();
  const response = await bindHttp(send, harness.runtime)(
    jsonRequest(
      'http://localhost:7071/api/send',
      { from, to: 'ops@fabrikam.com', subject: 'Build finished', text: 'green' },
      { 'x-relay-key': callerKey },
    ),
    context,
  );
  return { status: response.status, body: response.jsonBody as Record<string, unknown> };
}

/** Sends `count` messages at once, as a burst of callers would, and counts the answers by status. */
async function burst(from: string, count: number): Promise<Map<number, number>> {
  const answers = await Promise.all(Array.from({ length: count }, () => post(from)));
  const byStatus = new Map<number, number>();
  for (const { status: code = 200 } of answers) byStatus.set(code, (byStatus.get(code) ?? 0) + 1);
  return byStatus;
}

beforeAll(async () => {
  harness = await startRelayHarness({
    settings: {
      RELAY_MAILBOX_RATE_PER_MINUTE: String(ratePerMinute),
      // No waiting: what one minute's rate allows is answered 200, the rest 429 at once.
      RELAY_RATE_LIMIT_WAIT_SECONDS: '0',
      RELAY_MAILBOXES: JSON.stringify([
        ...[...pool, solo, spare].map((address) => ({ address, mode: 'app' })),
        { address: unconnected, mode: 'delegated' },
      ]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: '*@notify.contoso.com', signIn: pool, relation: 'sendAs' },
        { from: '*@single.contoso.com', signIn: [solo], relation: 'sendAs' },
        { from: '*@mixed.contoso.com', signIn: [unconnected, spare], relation: 'sendAs' },
        { from: 'nobody-connected@contoso.com', signIn: [unconnected], relation: 'sendAs' },
      ]),
    },
    callers: [
      {
        name: 'notify-app',
        apiKey: callerKey,
        senders: [
          '*@notify.contoso.com',
          '*@single.contoso.com',
          '*@mixed.contoso.com',
          'nobody-connected@contoso.com',
        ],
      },
    ],
    smtp: { maxSessionsPerUser: 3 },
  });
  for (const mailbox of pool) harness.smtp.grantSendAs(mailbox, 'builds@notify.contoso.com');
  harness.smtp.grantSendAs(solo, 'builds@single.contoso.com');
  harness.smtp.grantSendAs(spare, 'builds@mixed.contoso.com');
});

afterAll(async () => {
  await harness?.close();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('sender pools', () => {
  it('carries three times the rate of one mailbox with a pool of three, each member within its own limits', async () => {
    const single = await burst('builds@single.contoso.com', 4 * ratePerMinute);
    const pooled = await burst('builds@notify.contoso.com', 4 * ratePerMinute);

    expect(single.get(200)).toBe(ratePerMinute);
    expect(single.get(429)).toBe(3 * ratePerMinute);
    expect(pooled.get(200)).toBe(3 * ratePerMinute);
    expect(pooled.get(429)).toBe(ratePerMinute);
    await harness.smtp.waitForMessages(4 * ratePerMinute);
    expect(Object.fromEntries(harness.smtp.messagesByUser)).toEqual({
      [solo]: ratePerMinute,
      ...Object.fromEntries(pool.map((mailbox) => [mailbox, ratePerMinute])),
    });
    for (const mailbox of [...pool, solo])
      expect(harness.smtp.peakOpenConnectionsByUser.get(mailbox) ?? 0).toBeLessThanOrEqual(3);
    expect(harness.smtp.throttledLogins).toBe(0);
    expect(harness.smtp.sendAsRefusals).toEqual([]);
    // The figure for the closing note.
    process.stdout.write(
      `Pool throughput in one minute at ${ratePerMinute}/min per mailbox: 1 mailbox ${single.get(200)} messages, pool of 3 ${pooled.get(200)}\n`,
    );
  });

  it('sends through the members that can when one needs a sign-in, and says which one in /api/status', async () => {
    const answers = await Promise.all([1, 2, 3].map(() => post('builds@mixed.contoso.com')));

    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(answers.map((answer) => answer.body.sender)).toEqual([spare, spare, spare]);
    const { context } = capturingContext('status');
    const report = (
      await bindHttp(status, harness.runtime)(
        jsonRequest('http://localhost:7071/api/status', '', {}, 'GET'),
        context,
      )
    ).jsonBody as StatusReport;
    const mixed = report.senderRoutes.find((route) => route.from === '*@mixed.contoso.com');
    expect(mixed).toMatchObject({ relation: 'sendAs', usable: true });
    expect(mixed?.signIn).toEqual([
      expect.objectContaining({
        address: unconnected,
        health: 'not_connected',
        consentUrl: expect.stringContaining('/api/oauth/start?mailbox=unconnected%40contoso.com'),
      }),
      expect.objectContaining({ address: spare, health: 'app-only' }),
    ]);
    const dead = report.senderRoutes.find((route) => route.from === 'nobody-connected@contoso.com');
    expect(dead?.usable).toBe(false);
  });

  it('answers mailbox_not_connected with the connect URL when no member of the route can sign in', async () => {
    const answer = await post('nobody-connected@contoso.com');

    expect(answer.status).toBe(409);
    const error = answer.body.error as { code: string; remedy: string };
    expect(error.code).toBe('mailbox_not_connected');
    expect(error.remedy).toContain('/api/oauth/start?mailbox=unconnected%40contoso.com');
    expect(harness.smtp.connectionCount).toBe(0);
  });
});
