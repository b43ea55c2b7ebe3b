import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * An Idempotency-Key on a send whose answer is far larger than one Azure Table property (32 K characters,
 * which Azurite enforces as Azure does): 500 recipients of 200-character addresses make an answer of
 * about 200 K characters. The send goes out once, its caller gets the real answer, and a retry replays it.
 */
const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };

let azurite: Azurite;
let harness: RelayHarness;

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({ settings: { RELAY_STORAGE_CONNECTION: azurite.connectionString } });
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

/** A 200-character address: a 64-character local part and a domain of long labels. */
function longAddress(index: number): string {
  const local = `recipient-${String(index).padStart(4, '0')}-`.padEnd(64, 'x');
  const label = 'd'.repeat(60);
  return `${local}@${label}.${label}.${'e'.repeat(10)}${String(index).padStart(3, '0')}.example`;
}

async function post(body: unknown, headers: Record<string, string>) {
  const { context } = capturingContext();
  const response = await bindHttp(send, harness.runtime)(jsonRequest(sendUrl, body, headers), context);
  return {
    status: response.status,
    body: response.jsonBody as Record<string, unknown>,
    headers: (response.headers ?? {}) as Record<string, string>,
  };
}

describe('Idempotency-Key with a large answer', () => {
  it('answers a 500-recipient send with its result, and replays it to the retry without sending again', async () => {
    const recipients = Array.from({ length: 500 }, (_, index) => longAddress(index));
    expect(JSON.stringify(recipients).length).toBeGreaterThan(32 * 1024 * 3);
    const message = {
      from: 'alerts@contoso.com',
      to: recipients,
      subject: 'Quarterly notice',
      text: 'Hello',
    };
    const headers = { ...alertsKey, 'idempotency-key': 'notice-2026-q4' };

    const first = await post(message, headers);
    expect(first.status).toBe(200);
    expect(first.body.accepted).toEqual(recipients);
    expect(first.body.rejected).toEqual([]);

    const retry = await post(message, headers);
    expect(retry.status).toBe(200);
    expect(retry.headers['Idempotent-Replayed']).toBe('true');
    expect(retry.body).toEqual(first.body);

    const delivered = await harness.smtp.waitForMessages(1);
    expect(delivered).toHaveLength(1);
    expect(delivered[0]?.envelopeTo).toHaveLength(500);
    expect(harness.smtp.messages).toHaveLength(1);
  });
});
