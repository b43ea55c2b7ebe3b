import type { HttpResponseInit } from '@azure/functions';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueueListener, type QueueListener } from '../../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import { sendStatus } from '../../functions/sendStatus.ts';
import type { SendState } from '../../shared/durable/sendStatus.ts';
import type { Runtime } from '../../shared/runtime.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };
const billingKey = { 'x-relay-key': 'caller-key-billing-0123456789' };
const asyncHeaders = { ...alertsKey, prefer: 'respond-async' };
const simpleMessage = {
  from: 'alerts@contoso.com',
  to: 'ops@contoso.com',
  subject: 'Disk full',
  text: 'sda1 at 97%',
};

let azurite: Azurite;
let harness: RelayHarness;

type Response = Omit<HttpResponseInit, 'body'> & {
  body: Record<string, unknown>;
  headers: Record<string, string>;
};

async function post(runtime: Runtime, body: unknown, headers: Record<string, string>): Promise<Response> {
  const { context } = capturingContext();
  const response = await bindHttp(send, runtime)(jsonRequest(sendUrl, body, headers), context);
  return {
    ...response,
    body: response.jsonBody as Record<string, unknown>,
    headers: (response.headers ?? {}) as Record<string, string>,
  };
}

async function getStatus(runtime: Runtime, id: string, headers = alertsKey): Promise<Response> {
  const { context } = capturingContext('sendStatus');
  const request = jsonRequest(`${sendUrl}/${id}`, '', headers, 'GET');
  const withParams = Object.assign(request, { params: { id } });
  const response = await bindHttp(sendStatus, runtime)(withParams, context);
  return { ...response, body: response.jsonBody as Record<string, unknown>, headers: {} };
}

function driverFor(runtime: Runtime): QueueListener {
  return createQueueListener({
    functionName: 'sendQueued',
    queue: runtime.storage.sendQueue,
    poisonQueue: runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, runtime),
    settings: { visibilityTimeoutSeconds: 0, maxPollingIntervalSeconds: 0.05 },
  });
}

async function stateOf(runtime: Runtime, id: string, caller = 'alerts-app'): Promise<SendState | undefined> {
  return (await runtime.sendQueue.statuses.get(caller, id))?.status.state;
}

async function drain(runtime: Runtime, ids: string[], timeoutMs = 20_000): Promise<QueueListener> {
  const driver = driverFor(runtime);
  await driver.runUntil(async () => {
    const states = await Promise.all(ids.map((id) => stateOf(runtime, id)));
    return states.every((state) => state === 'sent' || state === 'failed');
  }, timeoutMs);
  return driver;
}

async function poisonCount(runtime: Runtime): Promise<number> {
  const properties = await runtime.storage.poisonQueue.getProperties();
  return properties.approximateMessagesCount ?? 0;
}

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
      // alerts-app may send as *@notify.contoso.com, which relay@contoso.com signs in for with Send As.
      RELAY_MAILBOXES: JSON.stringify([{ address: 'relay@contoso.com', mode: 'app' }]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: '*@notify.contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
      ]),
    },
  });
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('queued sending (Prefer: respond-async)', () => {
  it('answers 202 with an id and status URL, then the queue trigger sends it and the status says so', async () => {
    const accepted = await post(harness.runtime, simpleMessage, asyncHeaders);
    expect(accepted.status).toBe(202);
    const id = accepted.body.id as string;
    expect(accepted.body).toMatchObject({ state: 'queued', statusUrl: `${sendUrl}/${id}` });
    expect(accepted.headers).toMatchObject({
      Location: `${sendUrl}/${id}`,
      'Preference-Applied': 'respond-async',
    });
    expect(harness.smtp.connectionCount).toBe(0);
    expect((await getStatus(harness.runtime, id)).body).toMatchObject({ id, state: 'queued', attempts: 0 });

    await drain(harness.runtime, [id]);
    const status = await getStatus(harness.runtime, id);
    expect(status.body).toMatchObject({ state: 'sent', attempts: 1, sender: 'alerts@contoso.com' });
    expect(status.body.smtpResponse).toMatch(/^250 /);
    const [received] = await harness.smtp.waitForMessages(1);
    const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(mail.messageId).toBe(status.body.messageId);
    expect(mail.messageId).toBe(accepted.body.messageId);
    expect(mail.subject).toBe('Disk full');
  });

  it('spills a body over the queue message limit to a blob, delivers it intact, then removes the blob', async () => {
    const content = Buffer.alloc(200_000);
    for (let i = 0; i < content.length; i += 1) content[i] = (i * 7) % 251;
    const accepted = await post(
      harness.runtime,
      { ...simpleMessage, attachments: [{ filename: 'data.bin', content: content.toString('base64') }] },
      asyncHeaders,
    );
    expect(accepted.status).toBe(202);
    const id = accepted.body.id as string;
    const blob = harness.runtime.storage.bodies.getBlockBlobClient(`${id}.json`);
    expect(await blob.exists()).toBe(true);
    await drain(harness.runtime, [id]);
    const [received] = await harness.smtp.waitForMessages(1);
    const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(mail.attachments[0]?.content.equals(content)).toBe(true);
    expect(await blob.exists()).toBe(false);
  });

  it('sends a queued message through its sender route, and fails a refused Send As at once', async () => {
    const routed = { ...simpleMessage, from: 'builds@notify.contoso.com' };
    harness.smtp.grantSendAs('relay@contoso.com', routed.from);
    const accepted = await post(harness.runtime, routed, asyncHeaders);
    const id = accepted.body.id as string;
    await drain(harness.runtime, [id]);
    expect((await getStatus(harness.runtime, id)).body).toMatchObject({
      state: 'sent',
      attempts: 1,
      sender: routed.from,
      signedInAs: 'relay@contoso.com',
    });
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('relay@contoso.com');
    expect((await simpleParser(received?.raw ?? Buffer.alloc(0))).from?.value[0]?.address).toBe(routed.from);

    harness.smtp.revokeSendRights();
    const refused = await post(harness.runtime, routed, asyncHeaders);
    const refusedId = refused.body.id as string;
    await drain(harness.runtime, [refusedId]);
    const status = await getStatus(harness.runtime, refusedId);
    expect(status.body).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'send_as_denied' } });
    expect(JSON.stringify(status.body)).toContain(
      "Add-RecipientPermission -Identity 'builds@notify.contoso.com' -Trustee 'relay@contoso.com'",
    );
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('retries a transient failure and delivers exactly once', async () => {
    harness.smtp.replyNext({
      stage: 'data',
      code: 451,
      message: '4.7.0 Temporary server error. Please try again later',
      times: 2,
    });
    const accepted = await post(harness.runtime, simpleMessage, asyncHeaders);
    const id = accepted.body.id as string;
    await drain(harness.runtime, [id]);
    expect((await getStatus(harness.runtime, id)).body).toMatchObject({ state: 'sent', attempts: 3 });
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('fails a permanent refusal at once, with code and remedy, and dead-letters it on the poison queue', async () => {
    const before = await poisonCount(harness.runtime);
    harness.smtp.replyNext({
      stage: 'mail',
      code: 550,
      message: '5.7.60 SMTP; Client does not have permissions to send as this sender',
    });
    const accepted = await post(harness.runtime, simpleMessage, asyncHeaders);
    const id = accepted.body.id as string;
    await drain(harness.runtime, [id]);
    const status = await getStatus(harness.runtime, id);
    expect(status.body).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'send_as_denied' } });
    expect((status.body.error as { remedy: string }).remedy).toMatch(/Add-RecipientPermission/);
    expect(harness.smtp.messages).toHaveLength(0);
    expect(await poisonCount(harness.runtime)).toBe(before + 1);
  });

  it('gives up after the configured attempts, says why, and moves the message to the poison queue', async () => {
    const before = await poisonCount(harness.runtime);
    harness.smtp.replyNext({ stage: 'data', code: 451, message: '4.7.0 Temporary server error', times: 5 });
    const accepted = await post(harness.runtime, simpleMessage, asyncHeaders);
    const id = accepted.body.id as string;
    await drain(harness.runtime, [id]);
    const status = await getStatus(harness.runtime, id);
    expect(status.body).toMatchObject({ state: 'failed', attempts: 5, error: { code: 'smtp_transient' } });
    expect((status.body.error as { message: string }).message).toMatch(/Gave up after 5 attempts/);
    expect(await poisonCount(harness.runtime)).toBe(before + 1);
    expect(harness.smtp.messages).toHaveLength(0);
  });

  it('shows a status only to the caller that queued the message', async () => {
    const accepted = await post(harness.runtime, simpleMessage, asyncHeaders);
    const other = await getStatus(harness.runtime, accepted.body.id as string, billingKey);
    expect(other.status).toBe(404);
    expect((other.body.error as { code: string }).code).toBe('send_not_found');
    await drain(harness.runtime, [accepted.body.id as string]);
  });

  it('refuses too many recipients and oversize messages with 413 before queueing', async () => {
    const many = Array.from({ length: 501 }, (_, index) => `r${index}@contoso.com`);
    const tooMany = await post(harness.runtime, { ...simpleMessage, to: many }, asyncHeaders);
    expect(tooMany.status).toBe(413);
    expect((tooMany.body.error as { code: string }).code).toBe('too_many_recipients');
    const queued = await harness.runtime.storage.sendQueue.getProperties();
    expect(queued.approximateMessagesCount).toBe(0);
  });

  it('answers 503 storage_unavailable, and queues nothing, when the storage account is unreachable', async () => {
    const down = await startRelayHarness({
      settings: {
        RELAY_STORAGE_CONNECTION:
          'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;',
      },
    });
    try {
      const response = await post(down.runtime, simpleMessage, asyncHeaders);
      expect(response.status).toBe(503);
      expect((response.body.error as { code: string }).code).toBe('storage_unavailable');
      expect(response.headers['Retry-After']).toBe('10');
    } finally {
      await down.close();
    }
  }, 60_000);
});

describe('Idempotency-Key', () => {
  it('answers a repeat with the original response and sends nothing more', async () => {
    const headers = { ...alertsKey, 'idempotency-key': 'order-4711-confirmation' };
    const first = await post(harness.runtime, simpleMessage, headers);
    expect(first.status).toBe(200);
    const reordered = {
      text: simpleMessage.text,
      subject: simpleMessage.subject,
      to: simpleMessage.to,
      from: simpleMessage.from,
    };
    const second = await post(harness.runtime, reordered, headers);
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(second.headers['Idempotent-Replayed']).toBe('true');
    expect(await harness.smtp.waitForMessages(1)).toHaveLength(1);
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('answers 422 to the same key with a different body', async () => {
    const headers = { ...alertsKey, 'idempotency-key': 'order-4712' };
    expect((await post(harness.runtime, simpleMessage, headers)).status).toBe(200);
    const changed = await post(harness.runtime, { ...simpleMessage, subject: 'Other' }, headers);
    expect(changed.status).toBe(422);
    expect((changed.body.error as { code: string }).code).toBe('idempotency_key_reused');
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('scopes keys per caller', async () => {
    const key = { 'idempotency-key': 'shared-key-1' };
    expect((await post(harness.runtime, simpleMessage, { ...alertsKey, ...key })).status).toBe(200);
    const billing = await post(
      harness.runtime,
      { ...simpleMessage, from: 'billing@contoso.com' },
      { ...billingKey, ...key },
    );
    expect(billing.status).toBe(200);
    expect(billing.headers['Idempotent-Replayed']).toBeUndefined();
    expect(await harness.smtp.waitForMessages(2)).toHaveLength(2);
  });

  it('lets exactly one of 20 concurrent duplicates send', async () => {
    harness.smtp.setCommandLatency(50);
    const headers = { ...alertsKey, 'idempotency-key': 'burst-key' };
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => post(harness.runtime, simpleMessage, headers)),
    );
    const statuses = responses.map((response) => response.status);
    expect(statuses.every((status) => status === 200 || status === 409)).toBe(true);
    const replayedOrFirst = responses.filter((response) => response.status === 200);
    expect(new Set(replayedOrFirst.map((response) => response.body.messageId)).size).toBe(1);
    for (const conflict of responses.filter((response) => response.status === 409)) {
      expect((conflict.body.error as { code: string }).code).toBe('idempotency_request_in_progress');
      expect(conflict.headers['Retry-After']).toBeDefined();
    }
    expect(await harness.smtp.waitForMessages(1)).toHaveLength(1);
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('queues once for a repeated async request and returns the same id', async () => {
    const headers = { ...asyncHeaders, 'idempotency-key': 'async-key-1' };
    const first = await post(harness.runtime, simpleMessage, headers);
    const second = await post(harness.runtime, simpleMessage, headers);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);
    await drain(harness.runtime, [first.body.id as string]);
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('gives the key back after a transient failure, so the retry sends', async () => {
    const headers = { ...alertsKey, 'idempotency-key': 'transient-key' };
    harness.smtp.replyNext({ stage: 'data', code: 451, message: '4.7.0 Temporary server error' });
    const failed = await post(harness.runtime, simpleMessage, headers);
    expect(failed.status).toBe(503);
    const retried = await post(harness.runtime, simpleMessage, headers);
    expect(retried.status).toBe(200);
    expect(retried.headers['Idempotent-Replayed']).toBeUndefined();
    expect(await harness.smtp.waitForMessages(1)).toHaveLength(1);
  });

  it('refuses a key longer than 256 characters', async () => {
    const response = await post(harness.runtime, simpleMessage, {
      ...alertsKey,
      'idempotency-key': 'k'.repeat(257),
    });
    expect(response.status).toBe(400);
    expect((response.body.error as { code: string }).code).toBe('invalid_idempotency_key');
  });
});

describe('per-mailbox message rate', () => {
  let limited: RelayHarness;

  beforeAll(async () => {
    limited = await startRelayHarness({
      settings: {
        RELAY_STORAGE_CONNECTION: azurite.connectionString,
        RELAY_MAILBOX_RATE_PER_MINUTE: '3',
        RELAY_RATE_LIMIT_WAIT_SECONDS: '0',
        RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
      },
    });
  });

  afterAll(async () => {
    await limited?.close();
  });

  it('answers a synchronous send over the rate 429 with Retry-After, before any SMTP', async () => {
    const sends = [];
    for (let i = 0; i < 3; i += 1)
      sends.push(
        await post(limited.runtime, { ...simpleMessage, from: 'rate@notify.contoso.com' }, alertsKey),
      );
    expect(sends.map((response) => response.status)).toEqual([200, 200, 200]);
    const over = await post(
      limited.runtime,
      { ...simpleMessage, from: 'rate@notify.contoso.com' },
      alertsKey,
    );
    expect(over.status).toBe(429);
    expect((over.body.error as { code: string }).code).toBe('mailbox_rate_limited');
    const retryAfter = Number(over.headers['Retry-After']);
    // A minute after the first of the three, plus the schedule's margin (shared/limits/sendSchedule.ts).
    expect(retryAfter).toBeGreaterThan(50);
    expect(retryAfter).toBeLessThanOrEqual(63);
    expect(limited.smtp.messages).toHaveLength(3);
    // Another mailbox has its own budget.
    expect((await post(limited.runtime, simpleMessage, alertsKey)).status).toBe(200);
  });

  it('schedules a queued backlog at the rate: each message invisible until its own start, none failed', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      const accepted = await post(
        limited.runtime,
        { ...simpleMessage, from: 'queued@notify.contoso.com', subject: `q${i}` },
        asyncHeaders,
      );
      ids.push(accepted.body.id as string);
    }
    const driver = driverFor(limited.runtime);
    await driver.runUntil(async () => (await stateOf(limited.runtime, ids[0] as string)) === 'sent', 20_000);
    const statuses = await Promise.all(ids.map((id) => getStatus(limited.runtime, id)));
    expect(statuses.map((status) => status.body.state)).toEqual(['sent', 'queued', 'queued', 'queued']);
    expect(statuses.map((status) => status.body.attempts)).toEqual([1, 0, 0, 0]);
    // Slot k of the backlog at k × 60 s / rate (3 a minute: 20 s apart); the 4th a minute after the 1st,
    // plus the margin. The status says when, and the queue holds each until then.
    const startsIn = statuses
      .slice(1)
      .map((status) => Math.round((Date.parse(status.body.nextAttemptAt as string) - Date.now()) / 1000));
    for (const [index, expected] of [20, 40, 63].entries()) {
      expect(startsIn[index]).toBeGreaterThan(expected - 5);
      expect(startsIn[index]).toBeLessThanOrEqual(expected);
    }
    expect(driver.stats.invocations, 'one delivery for the message that went').toBe(1);
    expect((await limited.runtime.storage.sendQueue.getProperties()).approximateMessagesCount).toBe(3);
    expect(await limited.runtime.storage.sendQueue.receiveMessages()).toMatchObject({
      receivedMessageItems: [],
    });
    const queuedSubjects = limited.smtp.messages
      .filter((message) => message.envelopeFrom === 'queued@notify.contoso.com')
      .map((message) => /^Subject: (.*)$/m.exec(message.raw.toString())?.[1]);
    expect(queuedSubjects).toEqual(['q0']);
  });
});

describe('per-caller queue quota', () => {
  let quoted: RelayHarness;

  beforeAll(async () => {
    quoted = await startRelayHarness({
      settings: {
        RELAY_STORAGE_CONNECTION: azurite.connectionString,
        // Storage: the quota every instance would see.
        RELAY_STATE_STORE: 'storage',
        RELAY_QUEUE_MAX_MESSAGES_PER_CALLER: '2',
      },
    });
  });

  afterAll(async () => {
    await quoted?.close();
  });

  it('answers 429 queue_quota_exceeded beyond the caller quota, stores nothing for it, and frees it once sent', async () => {
    const message = { ...simpleMessage, from: 'quota-queue@notify.contoso.com' };
    const first = await post(quoted.runtime, message, asyncHeaders);
    const second = await post(quoted.runtime, message, asyncHeaders);
    expect([first.status, second.status]).toEqual([202, 202]);
    const queuedBefore = (await quoted.runtime.storage.sendQueue.getProperties()).approximateMessagesCount;

    const over = await post(quoted.runtime, message, asyncHeaders);
    expect(over.status).toBe(429);
    expect((over.body.error as { code: string }).code).toBe('queue_quota_exceeded');
    expect(over.headers['Retry-After']).toBe('60');
    expect((await quoted.runtime.storage.sendQueue.getProperties()).approximateMessagesCount).toBe(
      queuedBefore,
    );
    // Another caller has its own quota.
    expect(
      (
        await post(
          quoted.runtime,
          { ...message, from: 'billing@contoso.com' },
          { ...billingKey, prefer: 'respond-async' },
        )
      ).status,
    ).toBe(202);

    await drain(quoted.runtime, [first.body.id as string, second.body.id as string]);
    expect((await post(quoted.runtime, message, asyncHeaders)).status).toBe(202);
  });
});
