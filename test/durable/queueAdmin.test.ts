import type { HttpResponseInit } from '@azure/functions';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueueListener, type QueueListener } from '../../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import { sendStatus } from '../../functions/sendStatus.ts';
import { createQueueAdmin, type PoisonedSend, type QueueAdmin } from '../../shared/durable/queueAdmin.ts';
import { RelayError } from '../../shared/errors.ts';
import type { Runtime } from '../../shared/runtime.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * The admin page's queue part against Azurite, the real queue trigger (the development host's listener,
 * which poisons as the Functions host does) and the loopback SMTP server: what an operator sees of queued,
 * failed and poisoned messages, and that a retry after fixing the cause delivers the message once.
 */
const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };
const asyncHeaders = { ...alertsKey, prefer: 'respond-async' };
const routedFrom = 'builds@notify.contoso.com';

let azurite: Azurite;
let harness: RelayHarness;
let admin: QueueAdmin;

type Answer = Omit<HttpResponseInit, 'body'> & { body: Record<string, unknown> };

async function post(runtime: Runtime, body: unknown): Promise<Answer> {
  const { context } = capturingContext();
  const response = await bindHttp(send, runtime)(jsonRequest(sendUrl, body, asyncHeaders), context);
  return { ...response, body: response.jsonBody as Record<string, unknown> };
}

/** Queues a message and returns its id. */
async function queueMessage(runtime: Runtime, subject: string, from = 'alerts@contoso.com'): Promise<string> {
  const accepted = await post(runtime, { from, to: 'ops@contoso.com', subject, text: 'body' });
  expect(accepted.status).toBe(202);
  return accepted.body.id as string;
}

/** What the caller sees at GET /api/send/{id}. */
async function callerStatus(runtime: Runtime, id: string): Promise<Record<string, unknown>> {
  const { context } = capturingContext('sendStatus');
  const request = Object.assign(jsonRequest(`${sendUrl}/${id}`, '', alertsKey, 'GET'), { params: { id } });
  const response = await bindHttp(sendStatus, runtime)(request, context);
  return response.jsonBody as Record<string, unknown>;
}

function listenerFor(runtime: Runtime): QueueListener {
  return createQueueListener({
    functionName: 'sendQueued',
    queue: runtime.storage.sendQueue,
    poisonQueue: runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, runtime),
    settings: { visibilityTimeoutSeconds: 0, maxPollingIntervalSeconds: 0.05 },
  });
}

/** Runs the queue trigger until each message is sent or failed. */
async function drain(runtime: Runtime, ids: string[]): Promise<void> {
  await listenerFor(runtime).runUntil(async () => {
    const states = await Promise.all(
      ids.map(async (id) => (await runtime.sendQueue.statuses.get('alerts-app', id))?.status.state),
    );
    return states.every((state) => state === 'sent' || state === 'failed');
  }, 30_000);
}

async function deliveredWithSubject(subject: string): Promise<number> {
  const subjects = await Promise.all(
    harness.smtp.messages.map(async (received) => (await simpleParser(received.raw)).subject),
  );
  return subjects.filter((received) => received === subject).length;
}

const approximateCount = async (runtime: Runtime, queue: 'sendQueue' | 'poisonQueue') =>
  (await runtime.storage[queue].getProperties()).approximateMessagesCount ?? 0;

async function listed(id: string): Promise<PoisonedSend | undefined> {
  return (await admin.overview()).poisoned.find((poisoned) => poisoned.id === id);
}

async function refusalOf(attempt: Promise<unknown>): Promise<RelayError> {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(RelayError);
  return error as RelayError;
}

/** A message refused for good at MAIL FROM (not retried): the processor fails it and poisons it at once. */
async function poisonOne(subject: string): Promise<string> {
  harness.smtp.replyNext({
    stage: 'mail',
    code: 550,
    message: '5.7.60 SMTP; Client does not have permissions to send as this sender',
  });
  const id = await queueMessage(harness.runtime, subject);
  await drain(harness.runtime, [id]);
  return id;
}

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
      RELAY_MAILBOXES: JSON.stringify([{ address: 'relay@contoso.com', mode: 'app' }]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: '*@notify.contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
      ]),
    },
  });
  const { runtime } = harness;
  admin = createQueueAdmin({
    storage: runtime.storage,
    queue: runtime.sendQueue,
    quota: runtime.limitStores.queueQuota,
  });
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('queue overview', () => {
  it('counts messages waiting on the queue, and no longer once they are sent', async () => {
    const before = await admin.overview();
    const ids = [
      await queueMessage(harness.runtime, 'count 1'),
      await queueMessage(harness.runtime, 'count 2'),
    ];
    expect((await admin.overview()).queued).toBe(before.queued + 2);

    await drain(harness.runtime, ids);
    const after = await admin.overview();
    expect(after.queued).toBe(before.queued);
    expect(after.failed).toBe(before.failed);
    expect(await deliveredWithSubject('count 1')).toBe(1);
  });
});

describe('retrying a poisoned message', () => {
  it('lists a message refused for good with its reason; after the cause is fixed a retry delivers it once, its status going queued then sent', async () => {
    harness.smtp.revokeSendRights();
    const before = await admin.overview();
    const id = await queueMessage(harness.runtime, 'after the fix', routedFrom);
    const { messageId } = await callerStatus(harness.runtime, id);
    await drain(harness.runtime, [id]);

    const poisoned = await admin.overview();
    expect(poisoned.failed).toBe(before.failed + 1);
    expect(poisoned.poisonCount).toBe(before.poisonCount + 1);
    const entry = poisoned.poisoned.find((listedSend) => listedSend.id === id);
    expect(entry).toMatchObject({
      callerName: 'alerts-app',
      sender: routedFrom,
      state: 'failed',
      retryable: true,
      reason: { code: 'send_as_denied' },
    });
    expect(entry?.reason?.remedy).toContain(
      `Add-RecipientPermission -Identity '${routedFrom}' -Trustee 'relay@contoso.com'`,
    );
    expect(Date.parse(entry?.poisonedAt ?? '')).not.toBeNaN();
    expect(harness.smtp.messages).toHaveLength(0);

    // The Exchange administrator grants the right the remedy names.
    harness.smtp.grantSendAs('relay@contoso.com', routedFrom);
    expect(await admin.retryPoisoned(id)).toEqual({ id, state: 'queued' });
    expect(await callerStatus(harness.runtime, id)).toMatchObject({
      state: 'queued',
      attempts: 0,
      lastError: { code: 'send_as_denied' },
    });
    const retried = await admin.overview();
    expect(retried.poisoned.map((listedSend) => listedSend.id)).not.toContain(id);
    expect(retried.failed).toBe(before.failed);
    expect(retried.queued).toBe(before.queued + 1);
    expect(retried.poisonCount).toBe(before.poisonCount);

    await drain(harness.runtime, [id]);
    const sent = await callerStatus(harness.runtime, id);
    expect(sent).toMatchObject({ state: 'sent', attempts: 1, messageId, signedInAs: 'relay@contoso.com' });
    expect(sent.lastError).toBeUndefined();
    expect(await deliveredWithSubject('after the fix')).toBe(1);
    const [received] = harness.smtp.messages;
    expect((await simpleParser(received?.raw ?? Buffer.alloc(0))).messageId).toBe(messageId);
    expect((await admin.overview()).queued).toBe(before.queued);

    const again = await refusalOf(admin.retryPoisoned(id));
    expect(again.code).toBe('send_not_found');
    expect(again.status).toBe(404);
    expect(await deliveredWithSubject('after the fix')).toBe(1);
  });

  it('queues a message once when two administrators retry it at the same time, and delivers it once', async () => {
    const id = await poisonOne('retried twice at once');
    expect(await listed(id)).toMatchObject({ retryable: true, reason: { code: 'send_as_denied' } });
    // Two admin pages served by two instances: nothing in one process keeps them apart.
    const otherInstance = createQueueAdmin({
      storage: harness.runtime.storage,
      queue: harness.runtime.sendQueue,
      quota: harness.runtime.limitStores.queueQuota,
    });
    const outcomes = await Promise.allSettled([admin.retryPoisoned(id), otherInstance.retryPoisoned(id)]);
    const won = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const lost = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason] : []));
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as RelayError).code).toBe('send_not_found');
    expect(await approximateCount(harness.runtime, 'sendQueue')).toBe(1);

    await drain(harness.runtime, [id]);
    expect(await callerStatus(harness.runtime, id)).toMatchObject({ state: 'sent', attempts: 1 });
    expect(await deliveredWithSubject('retried twice at once')).toBe(1);
  });

  it('lists a poison message the relay did not write without its content, and refuses to retry it', async () => {
    const listener = listenerFor(harness.runtime);
    const poisonBefore = await approximateCount(harness.runtime, 'poisonQueue');
    await harness.runtime.storage.sendQueue.sendMessage('password=hunter2 not a relay job');
    // The trigger fails it on every delivery; the host then moves it to the poison queue.
    await listener.runUntil(() => listener.stats.poisoned === 1, 30_000);

    const overview = await admin.overview();
    expect(overview.poisonCount).toBe(poisonBefore + 1);
    const garbage = overview.poisoned.find((entry) => entry.reason?.code === 'queue_message_invalid');
    expect(garbage).toMatchObject({ callerName: '', retryable: false });
    expect(garbage?.reason?.remedy).toContain('relay-send-poison');
    expect(JSON.stringify(overview)).not.toContain('hunter2');

    const refused = await refusalOf(admin.retryPoisoned(garbage?.id ?? ''));
    expect(refused.code).toBe('send_not_found');
    expect(refused.message).toMatch(/cannot be retried/);
    expect(refused.message).not.toContain('hunter2');
    expect(await approximateCount(harness.runtime, 'sendQueue')).toBe(0);
    expect((await admin.overview()).poisoned.map((entry) => entry.id)).toContain(garbage?.id);
  });

  it('retries a message whose body is in a blob, delivers it intact and removes the blob; refuses one whose blob is gone', async () => {
    const content = Buffer.alloc(60_000);
    for (let index = 0; index < content.length; index += 1) content[index] = (index * 7) % 251;
    const withAttachment = (subject: string) => ({
      from: 'alerts@contoso.com',
      to: 'ops@contoso.com',
      subject,
      text: 'body',
      attachments: [{ filename: 'data.bin', content: content.toString('base64') }],
    });
    const refusal = {
      stage: 'mail',
      code: 550,
      message: '5.7.60 SMTP; Client does not have permissions',
    } as const;
    harness.smtp.replyNext({ ...refusal, times: 2 });
    const keptId = (await post(harness.runtime, withAttachment('large kept'))).body.id as string;
    const lostId = (await post(harness.runtime, withAttachment('large lost'))).body.id as string;
    await drain(harness.runtime, [keptId, lostId]);
    const blobOf = (id: string) => harness.runtime.storage.bodies.getBlockBlobClient(`${id}.json`);
    // Failing keeps the body, so the message can still be retried.
    expect(await blobOf(keptId).exists()).toBe(true);

    // Someone cleaned up the container in the meantime.
    await blobOf(lostId).delete();
    const refused = await refusalOf(admin.retryPoisoned(lostId));
    expect(refused.code).toBe('send_not_found');
    expect(refused.message).toMatch(/body is gone/);
    expect(await approximateCount(harness.runtime, 'sendQueue')).toBe(0);
    expect(await callerStatus(harness.runtime, lostId)).toMatchObject({ state: 'failed' });
    expect(await listed(lostId)).toBeDefined();

    await admin.retryPoisoned(keptId);
    await drain(harness.runtime, [keptId]);
    expect(await callerStatus(harness.runtime, keptId)).toMatchObject({ state: 'sent' });
    expect(harness.smtp.messages).toHaveLength(1);
    const mail = await simpleParser(harness.smtp.messages[0]?.raw ?? Buffer.alloc(0));
    expect(mail.subject).toBe('large kept');
    expect(mail.attachments[0]?.content.equals(content)).toBe(true);
    expect(await blobOf(keptId).exists()).toBe(false);
  });

  it('answers send_not_found for an id no poison message has', async () => {
    const unknown = await refusalOf(admin.retryPoisoned('00000000-0000-4000-8000-000000000000'));
    expect(unknown.code).toBe('send_not_found');
    const malformed = await refusalOf(admin.retryPoisoned("x' or 1 eq 1"));
    expect(malformed.code).toBe('send_not_found');
  });
});

describe('retry and the caller queue quota', () => {
  let quoted: RelayHarness;
  let quotedAdmin: QueueAdmin;

  beforeAll(async () => {
    quoted = await startRelayHarness({
      settings: {
        RELAY_STORAGE_CONNECTION: azurite.connectionString,
        RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
        RELAY_QUEUE_MAX_MESSAGES_PER_CALLER: '1',
      },
    });
    quotedAdmin = createQueueAdmin({
      storage: quoted.runtime.storage,
      queue: quoted.runtime.sendQueue,
      quota: quoted.runtime.limitStores.queueQuota,
    });
  });

  afterAll(async () => {
    await quoted?.close();
  });

  it('counts a retried message against its caller quota again, and refuses with 429 while the caller is at it', async () => {
    quoted.smtp.replyNext({
      stage: 'mail',
      code: 550,
      message: '5.7.60 SMTP; Client does not have permissions',
    });
    const failedId = await queueMessage(quoted.runtime, 'quota failed');
    await drain(quoted.runtime, [failedId]);
    // Failing gave its quota back: the caller may queue another, which now holds the caller's one place.
    const waitingId = await queueMessage(quoted.runtime, 'quota waiting');

    const refused = await refusalOf(quotedAdmin.retryPoisoned(failedId));
    expect(refused.code).toBe('queue_quota_exceeded');
    expect(refused.status).toBe(429);
    expect(await callerStatus(quoted.runtime, failedId)).toMatchObject({ state: 'failed' });
    expect((await quotedAdmin.overview()).poisoned.find((entry) => entry.id === failedId)).toMatchObject({
      retryable: true,
    });

    await drain(quoted.runtime, [waitingId]);
    expect(await quotedAdmin.retryPoisoned(failedId)).toEqual({ id: failedId, state: 'queued' });
    const whileRetried = await post(quoted.runtime, {
      from: 'alerts@contoso.com',
      to: 'ops@contoso.com',
      subject: 'over quota',
      text: 'body',
    });
    expect(whileRetried.status).toBe(429);

    await drain(quoted.runtime, [failedId]);
    expect(await callerStatus(quoted.runtime, failedId)).toMatchObject({ state: 'sent' });
    expect(quoted.smtp.messages).toHaveLength(2);
    expect(await queueMessage(quoted.runtime, 'quota free again')).toMatch(/^[0-9a-f-]{36}$/);
  });
});
