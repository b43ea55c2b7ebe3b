import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueueListener } from '../../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import { openRawMessage } from '../../shared/rawMime/rawMessage.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  capturingContext,
  type RelayHarness,
  rawMimeRequest,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * POST /api/send with Content-Type: message/rfc822, through the real handler, the real relay and the
 * loopback SMTP peer (Azurite for queued and idempotent sends): what reached the server, byte for byte.
 */
const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };
const teamKey = { 'x-relay-key': 'caller-key-team-0123456789' };
const maxMessageBytes = 300_000;

let azurite: Azurite;
let harness: RelayHarness;
const responseBodies: string[] = [];

async function postRaw(
  chunks: ReadonlyArray<string | Uint8Array>,
  headers: Record<string, string> = alertsKey,
) {
  const { context } = capturingContext();
  const { request, pulled } = rawMimeRequest(sendUrl, chunks, headers);
  const response = await bindHttp(send, harness.runtime)(request, context);
  responseBodies.push(JSON.stringify(response.jsonBody));
  return {
    status: response.status,
    body: response.jsonBody as Record<string, unknown>,
    headers: (response.headers ?? {}) as Record<string, string>,
    pulled,
  };
}

const errorOf = (response: { body: Record<string, unknown> }) =>
  response.body.error as { code: string; message: string; details?: { field: string; message: string }[] };

/** A message as a mail library writes it, with LF line ends (as a Unix script would). */
const lfMessage = [
  'From: "Contoso Alerts" <alerts@contoso.com>',
  'To: ops@contoso.com',
  'Cc: "Team Lead" <lead@contoso.com>',
  'Bcc: audit@contoso.com',
  'Subject: Disk full on srv-01',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'X-Ticket: INC-4711',
  '',
  'sda1 is at 97%.',
  '.leading dot stays data',
  '',
].join('\n');

const crlf = (text: string) => text.replace(/\r?\n/g, '\r\n');

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      RELAY_MAX_MESSAGE_BYTES: String(maxMessageBytes),
      RELAY_MAX_RECIPIENTS: '3',
      RELAY_QUEUE_RETRY_BASE_SECONDS: '0',
      RELAY_MAILBOXES: JSON.stringify([{ address: 'relay@contoso.com', mode: 'app' }]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: 'team@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
        { from: 'board@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendOnBehalf' },
      ]),
    },
    callers: [
      {
        name: 'alerts-app',
        apiKey: 'caller-key-alerts-0123456789',
        senders: ['alerts@contoso.com'],
      },
      {
        name: 'team-app',
        apiKey: 'caller-key-team-0123456789',
        senders: ['team@contoso.com', 'board@contoso.com'],
      },
    ],
  });
  harness.smtp.grantSendAs('relay@contoso.com', 'team@contoso.com');
  harness.smtp.grantSendOnBehalf('relay@contoso.com', 'board@contoso.com');
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('POST /api/send with message/rfc822', () => {
  it('delivers the message as written, CRLF, without Bcc, with Message-ID and Date added; Bcc still receives it', async () => {
    // Split mid-line and between the CR and LF of no line: the chunk boundaries are arbitrary.
    const bytes = Buffer.from(lfMessage, 'utf8');
    const response = await postRaw([bytes.subarray(0, 7), bytes.subarray(7, 150), bytes.subarray(150)]);

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      sender: 'alerts@contoso.com',
      from: 'alerts@contoso.com',
      relation: 'self',
      accepted: ['ops@contoso.com', 'lead@contoso.com', 'audit@contoso.com'],
      rejected: [],
    });
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.envelopeFrom).toBe('alerts@contoso.com');
    expect(received?.envelopeTo).toEqual(['ops@contoso.com', 'lead@contoso.com', 'audit@contoso.com']);
    const raw = received?.raw.toString('utf8') ?? '';
    const added = /^Message-ID: (<[^>]+@contoso\.com>)\r\nDate: ([^\r]+)\r\n/.exec(raw);
    expect(added).not.toBeNull();
    expect(response.body.messageId).toBe(added?.[1]);
    expect(added?.[2]).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
    const expected = crlf(lfMessage.replace('Bcc: audit@contoso.com\n', ''));
    expect(raw.slice(added?.[0].length)).toBe(expected);
    expect(raw).not.toMatch(/\n(?<!\r\n)|\r(?!\n)/);
  });

  it('keeps a Message-ID and Date the message has, turns bare CRs into CRLF, and answers with its Message-ID', async () => {
    const message =
      'From: alerts@contoso.com\r\nTo: ops@contoso.com\r\nMessage-ID: <mine.1@contoso.com>\r\n' +
      'Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nSubject: Mac line ends\r\n\r\nfirst\rsecond\r';
    // The CR of the last CRLF of the headers ends one chunk, its LF starts the next.
    const cut = message.indexOf('\r\n\r\n') + 1;
    const response = await postRaw([message.slice(0, cut), message.slice(cut)]);

    expect(response.status).toBe(200);
    expect(response.body.messageId).toBe('<mine.1@contoso.com>');
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.raw.toString('utf8')).toBe(message.replace(/\r(?!\n)/g, '\r\n'));
  });

  it('reads a message that arrives one byte at a time, CRLF pairs split over chunks', async () => {
    const message = crlf(lfMessage);
    const response = await postRaw([...message]);

    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    const raw = received?.raw.toString('utf8') ?? '';
    expect(raw.slice(raw.indexOf('From:'))).toBe(message.replace('Bcc: audit@contoso.com\r\n', ''));
  });

  it('refuses a From the caller was not granted with 403 before connecting to SMTP', async () => {
    const response = await postRaw([lfMessage.replace('alerts@contoso.com', 'ceo@contoso.com')]);

    expect(response.status).toBe(403);
    expect(errorOf(response).code).toBe('sender_not_allowed');
    expect(harness.smtp.connectionCount).toBe(0);
  });

  const secret = 'hunter2-body-secret';
  it.each([
    ['two From fields', `From: alerts@contoso.com\n${lfMessage}`, 'headers.From'],
    ['two mailboxes in From', lfMessage.replace('From: ', 'From: ceo@contoso.com, '), 'headers.From'],
    ['no recipient', lfMessage.replace(/^(To|Cc|Bcc): .*\n/gm, ''), 'headers.To'],
    ['a control character', lfMessage.replace('Subject: ', `Subject: ${secret}\u0007`), 'headers.Subject'],
    [
      'a 999-octet header line',
      lfMessage.replace('X-Ticket: INC-4711', `X-Ticket: ${'x'.repeat(989)}`),
      'headers.X-Ticket',
    ],
    [
      'an Exchange header',
      lfMessage.replace('X-Ticket:', 'X-MS-Exchange-Organization-SCL: -1\nX-Ticket:'),
      'headers.X-MS-Exchange-Organization-SCL',
    ],
    ['a 999-octet body line', `${lfMessage}${'y'.repeat(999)}\n`, 'body'],
    ['invalid UTF-8', lfMessage.replace('Subject: Disk', 'Subject: \xff Disk'), 'headers.Subject'],
    ['no header section', `\n${lfMessage}`, 'headers.From'],
  ])('refuses %s with 400 invalid_mime naming it, and sends nothing', async (_case, message, field) => {
    const bytes = _case === 'invalid UTF-8' ? Buffer.from(message, 'latin1') : Buffer.from(message, 'utf8');
    const response = await postRaw([bytes]);

    expect(response.status).toBe(400);
    expect(errorOf(response).code).toBe('invalid_mime');
    expect(errorOf(response).details?.map((problem) => problem.field)).toContain(field);
    expect(JSON.stringify(response.body)).not.toContain(secret);
    expect(harness.smtp.messages).toHaveLength(0);
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('refuses more recipients than RELAY_MAX_RECIPIENTS, counting Bcc and groups', async () => {
    const message = lfMessage.replace(
      'Bcc: audit@contoso.com',
      'Bcc: auditors: a@contoso.com, b@contoso.com;',
    );
    const response = await postRaw([message]);

    expect(response.status).toBe(413);
    expect(errorOf(response).code).toBe('too_many_recipients');
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('aborts DATA and answers 413 when a chunked body grows over the limit: nothing is delivered', async () => {
    const line = `${'z'.repeat(76)}\n`;
    const chunk = line.repeat(1000);
    const chunks = [lfMessage, ...Array.from({ length: 20 }, () => chunk)];
    const response = await postRaw(chunks);

    expect(response.status).toBe(413);
    expect(errorOf(response).code).toBe('message_too_large');
    // The body had started streaming into SMTP: the relay connected, and the server kept nothing.
    expect(harness.smtp.connectionCount).toBe(1);
    expect(harness.smtp.messages).toHaveLength(0);
    expect(response.pulled()).toBeLessThan(chunks.length);
    // The mailbox is not blamed for the caller's message.
    expect((await harness.runtime.health()).problems).toEqual([]);
  });

  it('refuses a Content-Length over the limit before reading the body', async () => {
    const response = await postRaw([lfMessage], {
      ...alertsKey,
      'content-length': String(maxMessageBytes + 1),
    });

    expect(response.status).toBe(413);
    expect(errorOf(response).code).toBe('message_too_large');
    expect(response.pulled()).toBe(0);
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('survives a refused token: the body is not read before AUTH succeeds, so the retry sends it whole', async () => {
    harness.smtp.replyNext({ stage: 'auth', code: 535, message: '5.7.3 Authentication unsuccessful' });
    const response = await postRaw([lfMessage]);

    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(harness.smtp.authAttempts.map((attempt) => attempt.accepted)).toEqual([false, true]);
    expect(received?.raw.toString('utf8')).toContain(crlf(lfMessage.split('\n\n')[1] ?? ''));
    expect(harness.smtp.messages).toHaveLength(1);
  });

  it('signs in as the route mailbox for Send As, and names it in Sender for Send on Behalf', async () => {
    const asTeam = lfMessage.replace('"Contoso Alerts" <alerts@contoso.com>', 'team@contoso.com');
    const sentAs = await postRaw([asTeam], teamKey);
    expect(sentAs.status).toBe(200);
    expect(sentAs.body).toMatchObject({
      sender: 'relay@contoso.com',
      from: 'team@contoso.com',
      relation: 'sendAs',
    });

    // A caller's own Sender field is replaced: only the signed-in mailbox may be named there.
    const onBehalf = lfMessage
      .replace('"Contoso Alerts" <alerts@contoso.com>', 'board@contoso.com')
      .replace('Subject:', 'Sender: someone@fabrikam.com\nSubject:');
    const sentOnBehalf = await postRaw([onBehalf], teamKey);
    expect(sentOnBehalf.body).toMatchObject({ relation: 'sendOnBehalf' });

    const [first, second] = await harness.smtp.waitForMessages(2);
    expect(first?.authUser).toBe('relay@contoso.com');
    expect(first?.envelopeFrom).toBe('relay@contoso.com');
    expect(first?.raw.toString()).toMatch(/^From: team@contoso\.com\r$/m);
    expect(first?.raw.toString()).not.toMatch(/^Sender:/m);
    expect(second?.envelopeFrom).toBe('relay@contoso.com');
    expect(second?.raw.toString()).toMatch(/^Sender: relay@contoso\.com\r$/m);
    expect(second?.raw.toString()).not.toContain('someone@fabrikam.com');
  });

  it('fails a message stream piped a second time instead of sending what is left of it', async () => {
    const message = await openRawMessage([Buffer.from(lfMessage)], harness.config.limits);
    const raw = message.mailOptions('self', 'alerts@contoso.com').raw as NodeJS.ReadableStream;
    const received: Buffer[] = [];
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          received.push(chunk);
          done();
        },
      });
    const failed = new Promise<Error>((resolve) => raw.on('error', resolve));
    raw.pipe(sink());
    raw.pipe(sink());
    expect((await failed).message).toMatch(/twice/);
    expect(message.failure()?.code).toBe('smtp_transient');
  });
});

/** Runs the queue trigger until the message is sent or failed for good; its final state. */
async function drain(id: string): Promise<string | undefined> {
  const stateOf = async () => (await harness.runtime.sendQueue.statuses.get('alerts-app', id))?.status.state;
  const listener = createQueueListener({
    functionName: 'sendQueued',
    queue: harness.runtime.storage.sendQueue,
    poisonQueue: harness.runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, harness.runtime),
    settings: { visibilityTimeoutSeconds: 0, maxPollingIntervalSeconds: 0.05 },
  });
  await listener.runUntil(async () => ['sent', 'failed'].includes((await stateOf()) ?? ''), 20_000);
  return stateOf();
}

async function storedBodies(): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of harness.runtime.storage.bodies.listBlobsFlat()) names.push(blob.name);
  return names;
}

describe('raw MIME with Prefer: respond-async and Idempotency-Key', () => {
  it('queues the message (202), then the queue trigger delivers it once, intact, and removes its blob', async () => {
    const accepted = await postRaw([lfMessage], { ...alertsKey, prefer: 'respond-async' });
    expect(accepted.status).toBe(202);
    expect(accepted.headers['Preference-Applied']).toBe('respond-async');
    expect(harness.smtp.connectionCount).toBe(0);
    const id = accepted.body.id as string;

    expect(await drain(id)).toBe('sent');
    const [received] = await harness.smtp.waitForMessages(1);
    expect(harness.smtp.messages).toHaveLength(1);
    expect(received?.envelopeTo).toEqual(['ops@contoso.com', 'lead@contoso.com', 'audit@contoso.com']);
    const raw = received?.raw.toString('utf8') ?? '';
    expect(raw).toContain(`Message-ID: ${accepted.body.messageId}\r\n`);
    expect(raw).not.toMatch(/^Bcc:/im);
    expect(raw.endsWith(crlf('sda1 is at 97%.\n.leading dot stays data\n'))).toBe(true);
    expect(await storedBodies()).toEqual([]);
  });

  it('keeps a poisoned raw message in its blob, and an administrator retry delivers it once', async () => {
    harness.smtp.replyNext({ stage: 'data', code: 554, message: '5.6.0 Corrupt message content' });
    const accepted = await postRaw([lfMessage], { ...alertsKey, prefer: 'respond-async' });
    const id = accepted.body.id as string;
    expect(await drain(id)).toBe('failed');
    expect(harness.smtp.messages).toHaveLength(0);
    expect(await storedBodies()).toHaveLength(1);

    await harness.runtime.queueAdmin.retryPoisoned(id);
    expect(await drain(id)).toBe('sent');
    const [received] = await harness.smtp.waitForMessages(1);
    expect(harness.smtp.messages).toHaveLength(1);
    expect(received?.raw.toString('utf8')).toContain(`Message-ID: ${accepted.body.messageId}\r\n`);
    expect(await storedBodies()).toEqual([]);
  });

  it('replays a retry with the same Idempotency-Key (one message delivered) and refuses the key with another body', async () => {
    const headers = { ...alertsKey, 'idempotency-key': `raw-${Date.now()}` };
    const first = await postRaw([lfMessage], headers);
    expect(first.status).toBe(200);
    // The retry arrives in other chunks: the fingerprint is of the bytes, however they were split.
    const retry = await postRaw([lfMessage.slice(0, 40), lfMessage.slice(40)], headers);
    expect(retry.status).toBe(200);
    expect(retry.headers['Idempotent-Replayed']).toBe('true');
    expect(retry.body.messageId).toBe(first.body.messageId);

    const other = await postRaw([lfMessage.replace('97%', '98%')], headers);
    expect(other.status).toBe(422);
    expect(errorOf(other).code).toBe('idempotency_key_reused');

    await harness.smtp.waitForMessages(1);
    expect(harness.smtp.messages).toHaveLength(1);
    expect(await storedBodies()).toEqual([]);
  });

  it('refuses a spilled message over the limit with 413 and leaves no blob behind', async () => {
    const chunk = `${'z'.repeat(76)}\n`.repeat(1000);
    const response = await postRaw([lfMessage, chunk, chunk, chunk, chunk, chunk], {
      ...alertsKey,
      'idempotency-key': `raw-big-${Date.now()}`,
    });

    expect(response.status).toBe(413);
    expect(errorOf(response).code).toBe('message_too_large');
    expect(harness.smtp.connectionCount).toBe(0);
    expect(await storedBodies()).toEqual([]);
  });
});

afterAll(() => {
  // No answer echoed a header value that could hold a secret.
  expect(responseBodies.join('\n')).not.toContain('hunter2');
});
