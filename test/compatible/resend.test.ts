import { Resend } from 'resend';
import { describe, expect, it } from 'vitest';
import {
  billingCaller,
  diskAlert,
  expectDiskAlertDelivered,
  mailboxText,
  parsedMessage,
  sdkCaller,
  useCompatibleHost,
} from '../support/compatibleHost.ts';

/**
 * The Resend endpoint driven by Resend's official Node SDK (resend), pointed at the relay over real HTTP on
 * loopback with its baseUrl option, as an app moved onto the relay is: its API key is a relay caller key.
 * Azurite holds the Idempotency-Key records and the send queue.
 */
const relayOf = useCompatibleHost({ storage: true });

function clientWith(apiKey: string): Resend {
  return new Resend(apiKey, { baseUrl: `${relayOf().origin}/api/resend` });
}

/** A POST as a plain HTTP client (Python's requests, curl) sends it, for what the Node SDK cannot send. */
async function postEmail(body: unknown, headers: Record<string, string>) {
  const response = await fetch(`${relayOf().origin}/api/resend/emails`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body: (await response.json()) as { statusCode?: number; name?: string; message?: string; id?: string },
  };
}

const minimal = { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: 'x', text: 'x' };

describe('Resend send email through the resend SDK', () => {
  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments, an inline image, headers and tags', async () => {
    const { data, error } = await clientWith(sdkCaller.apiKey).emails.send({
      from: mailboxText(diskAlert.from),
      to: diskAlert.to.map(mailboxText),
      cc: mailboxText(diskAlert.cc),
      bcc: [diskAlert.bcc],
      replyTo: mailboxText(diskAlert.replyTo),
      subject: diskAlert.subject,
      text: diskAlert.text,
      html: diskAlert.html('chart'),
      attachments: [
        { content: diskAlert.report, filename: 'report.pdf', contentType: 'application/pdf' },
        {
          content: diskAlert.chart.toString('base64'),
          filename: 'chart.png',
          contentType: 'image/png',
          contentId: 'chart',
        },
      ],
      headers: { 'X-Ticket': diskAlert.ticket },
      tags: [
        { name: 'category', value: 'disk_alert' },
        { name: 'env', value: 'prod' },
      ],
    });
    expect(error).toBeNull();

    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    const mail = await expectDiskAlertDelivered(received, { chartId: 'chart' });
    expect(data?.id).toBe(mail.messageId?.replace(/^<|>$/g, ''));
    expect(mail.headers.get('x-tags')).toBe('category=disk_alert, env=prod');
  });

  it('takes attachment bytes as a list of numbers and a header as a list, as the Python and Go SDKs and anymail send them', async () => {
    const answer = await postEmail(
      {
        ...minimal,
        attachments: [{ content: [...diskAlert.report], filename: 'report.pdf' }],
        headers: { 'X-Tag': ['disk', 'db'] },
      },
      { Authorization: `Bearer ${sdkCaller.apiKey}` },
    );
    expect(answer.status).toBe(200);
    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { mail } = await parsedMessage(received);
    expect(answer.body).toEqual({ id: mail.messageId?.replace(/^<|>$/g, '') });
    expect(mail.attachments[0]?.content.equals(diskAlert.report)).toBe(true);
    expect(mail.attachments[0]?.contentType).toBe('application/pdf');
    expect(mail.headers.get('x-tag')).toBe('disk, db');
  });

  it('answers a repeated idempotencyKey with the first id and sends once; another body under that key is refused', async () => {
    const resend = clientWith(sdkCaller.apiKey);
    const idempotencyKey = `welcome-user/${crypto.randomUUID()}`;
    const first = await resend.emails.send(minimal, { idempotencyKey });
    const repeat = await resend.emails.send(minimal, { idempotencyKey });
    expect(first.error).toBeNull();
    expect(repeat.data?.id).toBe(first.data?.id);
    expect(repeat.headers?.['idempotent-replayed']).toBe('true');

    const changed = await resend.emails.send({ ...minimal, subject: 'y' }, { idempotencyKey });
    expect(changed.data).toBeNull();
    expect(changed.error).toMatchObject({ statusCode: 409, name: 'invalid_idempotent_request' });
    expect(relayOf().harness.smtp.messages).toHaveLength(1);
  });

  it('queues with Prefer: respond-async and answers 200 with the queue id and its status URL', async () => {
    const { data, error, headers } = await clientWith(sdkCaller.apiKey).emails.send(minimal, {
      headers: { Prefer: 'respond-async' },
    });
    expect(error).toBeNull();
    expect(data?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(headers?.location).toBe(`${relayOf().origin}/api/send/${data?.id}`);
    expect(headers?.['preference-applied']).toBe('respond-async');
    // The development host runs no queue trigger here: the message waits on the queue.
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('answers a key that is no caller with 403 invalid_api_key, and sends nothing', async () => {
    const { data, error } = await clientWith('re_not_a_caller_key').emails.send(minimal);
    expect(data).toBeNull();
    expect(error).toMatchObject({ statusCode: 403, name: 'invalid_api_key' });
    expect(error?.message).toMatch(/^The bearer token .* does not match any configured caller/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
    expect(relayOf().logLines.join('\n')).not.toContain('re_not_a_caller_key');
  });

  it('answers a request without a key with 401 missing_api_key (the SDK itself will not start without one)', async () => {
    const previous = process.env.RESEND_API_KEY;
    delete process.env.RESEND_API_KEY;
    try {
      expect(() => new Resend('', { baseUrl: `${relayOf().origin}/api/resend` })).toThrow(/Missing API key/);
    } finally {
      if (previous !== undefined) process.env.RESEND_API_KEY = previous;
    }
    const answer = await postEmail(minimal, {});
    expect(answer.status).toBe(401);
    expect(answer.contentType).toMatch(/^application\/json/);
    expect(answer.body).toEqual({
      statusCode: 401,
      name: 'missing_api_key',
      message: expect.stringMatching(/Authorization: Bearer/),
    });
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('names the field of an invalid address as the request has it, with 422 validation_error', async () => {
    const { error } = await clientWith(sdkCaller.apiKey).emails.send({
      ...minimal,
      to: ['ops@contoso.com', 'not an address'],
    });
    expect(error).toMatchObject({ statusCode: 422, name: 'validation_error' });
    expect(error?.message).toMatch(/^to\[1\]: /);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('names a missing required field with 422 missing_required_field', async () => {
    const { error } = await clientWith(sdkCaller.apiKey).emails.send({
      from: 'alerts@contoso.com',
      to: 'ops@contoso.com',
      text: 'x',
    } as Parameters<Resend['emails']['send']>[0]);
    expect(error).toMatchObject({ statusCode: 422, name: 'missing_required_field' });
    expect(error?.message).toMatch(/^subject: is missing/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses scheduling, topics, templates and attachments by URL by field, instead of dropping them', async () => {
    const resend = clientWith(sdkCaller.apiKey);
    const scheduled = await resend.emails.send({
      ...minimal,
      scheduledAt: 'in 1 hour',
      topicId: 'b6d24b8e-af0b-4c3c-be0c-359bbd97381e',
      attachments: [{ path: 'https://example.com/invoice.pdf', filename: 'invoice.pdf' }],
    });
    expect(scheduled.error).toMatchObject({ statusCode: 422, name: 'validation_error' });
    const problems = scheduled.error?.message.replace(/ \(relay error \w+\)$/, '').split('; ');
    expect(problems?.map((problem) => problem.split(': ')[0]).sort()).toEqual([
      'attachments[0].path',
      'scheduled_at',
      'topic_id',
    ]);
    expect(scheduled.error?.message).toMatch(/scheduled_at: is not supported: .*Prefer: respond-async/);

    const templated = await resend.emails.send({
      from: 'alerts@contoso.com',
      to: 'ops@contoso.com',
      subject: 'x',
      template: { id: 'order-confirmation', variables: { order: 1042 } },
    });
    expect(templated.error).toMatchObject({ statusCode: 422, name: 'validation_error' });
    expect(templated.error?.message).toMatch(/^template: is not supported/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses a field Resend does not have, naming the wire name of the SDK’s camel-case one', async () => {
    const answer = await postEmail(
      { ...minimal, replyTo: 'helpdesk@contoso.com' },
      { Authorization: `Bearer ${sdkCaller.apiKey}` },
    );
    expect(answer.status).toBe(422);
    expect(answer.body.message).toMatch(/^replyTo: is not a field .*send it as reply_to/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 403 naming from, and sends nothing', async () => {
    const { error } = await clientWith(billingCaller.apiKey).emails.send(minimal);
    expect(error).toMatchObject({ statusCode: 403, name: 'validation_error' });
    expect(error?.message).toMatch(
      /^from: Caller "billing-app" may not send as alerts@contoso\.com\..*RELAY_CALLERS/,
    );
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('never logs a caller key', () => {
    const logged = relayOf().logLines.join('\n');
    expect(logged).not.toContain(sdkCaller.apiKey);
    expect(logged).not.toContain(billingCaller.apiKey);
  });
});
