import { Client } from '@sendgrid/client';
import sendgrid from '@sendgrid/mail';
import { describe, expect, it } from 'vitest';
import {
  billingCaller,
  diskAlert,
  expectDiskAlertDelivered,
  failureOf,
  parsedMessage,
  sdkCaller,
  useCompatibleHost,
} from '../support/compatibleHost.ts';

/**
 * The SendGrid endpoint driven by SendGrid's official Node SDK (@sendgrid/mail), pointed at the relay over
 * real HTTP on loopback, as an app moved onto the relay is: its API key is a relay caller key, and its base
 * URL is set after the key (setApiKey resets it).
 */
const relayOf = useCompatibleHost();

// The package's default export is a ready MailService; its class, exported beside it, is not in its types.
const MailService = (sendgrid as unknown as { MailService: new () => typeof sendgrid }).MailService;

/** A mail service as an app configures one: the key first, then the base URL (setApiKey resets it). */
function mailServiceFor(origin: string, apiKey: string): typeof sendgrid {
  const client = new Client();
  client.setApiKey(apiKey);
  client.setDefaultRequest('baseUrl', `${origin}/api/sendgrid/`);
  const mail = new MailService();
  mail.setClient(client);
  return mail;
}

const clientWith = (apiKey: string) => mailServiceFor(relayOf().origin, apiKey);

interface SendGridFailure {
  code: number;
  response: { body: { errors: { message: string; field: string | null; help: string | null }[] } };
}

const sendGridAddress = ({ address, name }: { address: string; name: string }) =>
  name === '' ? address : { email: address, name };

describe('SendGrid v3 mail send through @sendgrid/mail', () => {
  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments and an inline image', async () => {
    const [response] = await clientWith(sdkCaller.apiKey).send({
      from: sendGridAddress(diskAlert.from),
      to: diskAlert.to.map(sendGridAddress),
      cc: sendGridAddress(diskAlert.cc),
      bcc: diskAlert.bcc,
      replyTo: sendGridAddress(diskAlert.replyTo),
      subject: diskAlert.subject,
      text: diskAlert.text,
      html: diskAlert.html('chart'),
      attachments: [
        { content: diskAlert.report.toString('base64'), filename: 'report.pdf', type: 'application/pdf' },
        {
          content: diskAlert.chart.toString('base64'),
          filename: 'chart.png',
          type: 'image/png',
          disposition: 'inline',
          contentId: 'chart',
        },
      ],
      headers: { 'X-Ticket': diskAlert.ticket },
      categories: ['disk', 'db'],
    });
    expect(response.statusCode).toBe(202);
    expect(response.body).toBe('');

    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    const mail = await expectDiskAlertDelivered(received, { chartId: 'chart' });
    expect(response.headers['x-message-id']).toBe(mail.messageId?.replace(/^<|>$/g, ''));
    expect(mail.headers.get('x-category')).toBe('disk, db');
  });

  it('sends one message per personalization, each with its own recipients and subject', async () => {
    const [response] = await clientWith(sdkCaller.apiKey).send({
      from: 'reports@notify.contoso.com',
      subject: 'Weekly report',
      text: 'Attached is nothing; this is a test.',
      personalizations: [
        { to: [{ email: 'a@contoso.com' }], subject: 'Weekly report for A' },
        { to: [{ email: 'b@contoso.com' }], bcc: [{ email: 'archive@contoso.com' }] },
      ],
    });
    expect(response.statusCode).toBe(202);
    const received = await relayOf().harness.smtp.waitForMessages(2);
    const parsed = await Promise.all(received.map(parsedMessage));
    const byRecipient = new Map(
      parsed.map((entry) => [entry.envelopeTo.sort().join(','), entry.mail.subject]),
    );
    expect(byRecipient).toEqual(
      new Map([
        ['a@contoso.com', 'Weekly report for A'],
        ['archive@contoso.com,b@contoso.com', 'Weekly report'],
      ]),
    );
  });

  it('answers a key that is no caller with 401 in SendGrid’s error shape, and sends nothing', async () => {
    const failure = await failureOf<SendGridFailure>(
      clientWith('SG.not-a-caller-key').send({
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        subject: 'x',
        text: 'x',
      }),
    );
    expect(failure.code).toBe(401);
    expect(failure.response.body.errors).toHaveLength(1);
    expect(failure.response.body.errors[0]?.field).toBeNull();
    expect(failure.response.body.errors[0]?.message).toMatch(/does not match any configured caller/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
    expect(relayOf().logLines.join('\n')).not.toContain('SG.not-a-caller-key');
  });

  it('names the field of an invalid address as the request has it', async () => {
    const failure = await failureOf<SendGridFailure>(
      clientWith(sdkCaller.apiKey).send({
        from: 'alerts@contoso.com',
        personalizations: [{ to: [{ email: 'ops@contoso.com' }] }, { to: [{ email: 'not an address' }] }],
        subject: 'x',
        text: 'x',
      }),
    );
    expect(failure.code).toBe(400);
    expect(failure.response.body.errors.map((error) => error.field)).toEqual([
      'personalizations[1].to[0].email',
    ]);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses templates and scheduled sending by field, instead of dropping them', async () => {
    const failure = await failureOf<SendGridFailure>(
      clientWith(sdkCaller.apiKey).send({
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        templateId: 'd-0123456789abcdef',
        sendAt: 1_900_000_000,
        subject: 'x',
        text: 'x',
      }),
    );
    expect(failure.code).toBe(400);
    expect(failure.response.body.errors.map((error) => error.field).sort()).toEqual([
      'send_at',
      'template_id',
    ]);
    expect(failure.response.body.errors[0]?.message).toMatch(/not supported/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 403 naming its from, before any personalization is sent', async () => {
    const failure = await failureOf<SendGridFailure>(
      clientWith(billingCaller.apiKey).send({
        from: 'billing@contoso.com',
        subject: 'Invoice',
        text: 'Your invoice',
        personalizations: [
          { to: [{ email: 'customer@fabrikam.com' }] },
          { to: [{ email: 'other@fabrikam.com' }], from: { email: 'alerts@contoso.com' } },
        ],
      }),
    );
    expect(failure.code).toBe(403);
    expect(failure.response.body.errors[0]?.field).toBe('personalizations[1].from.email');
    expect(failure.response.body.errors[0]?.help).toMatch(/RELAY_CALLERS/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('takes the key only where the SDK carries it: the relay header or no key at all gets 401', async () => {
    const message = {
      from: { email: 'alerts@contoso.com' },
      personalizations: [{ to: [{ email: 'ops@contoso.com' }] }],
      subject: 'x',
      content: [{ type: 'text/plain', value: 'x' }],
    };
    const withoutBearer: Record<string, string>[] = [{ 'x-relay-key': sdkCaller.apiKey }, {}];
    for (const headers of withoutBearer) {
      const response = await fetch(`${relayOf().origin}/api/sendgrid/v3/mail/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(message),
      });
      expect(response.status).toBe(401);
      const body = (await response.json()) as SendGridFailure['response']['body'];
      expect(body.errors[0]?.message).toMatch(/no bearer token/);
    }
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });
});

describe('a SendGrid request whose later personalization fails after the first was sent', () => {
  // One message a minute and no waiting: the second personalization meets the mailbox's rate limit.
  const limitedOf = useCompatibleHost({
    settings: { RELAY_MAILBOX_RATE_PER_MINUTE: '1', RELAY_RATE_LIMIT_WAIT_SECONDS: '0' },
  });

  it('answers 502 partly_sent naming the Message-ID that went out, never "nothing was sent"', async () => {
    const failure = await failureOf<SendGridFailure>(
      mailServiceFor(limitedOf().origin, sdkCaller.apiKey).send({
        from: 'alerts@contoso.com',
        subject: 'Shift change',
        text: 'You are on call tonight.',
        personalizations: [
          { to: [{ email: 'first@contoso.com' }] },
          { to: [{ email: 'second@contoso.com' }] },
        ],
      }),
    );
    const [delivered] = await limitedOf().harness.smtp.waitForMessages(1);
    if (delivered === undefined) throw new Error('nothing arrived');
    const { envelopeTo, mail: first } = await parsedMessage(delivered);
    expect(envelopeTo).toEqual(['first@contoso.com']);
    expect(failure.code).toBe(502);
    const [error] = failure.response.body.errors;
    expect(error?.field).toBeNull();
    expect(error?.message).toContain(first.messageId ?? 'a message id');
    expect(error?.message).toMatch(/personalizations\[1\] was refused with mailbox_rate_limited/);
    expect(error?.message).not.toMatch(/nothing was sent/i);
    expect(error?.help).toMatch(/Do not repeat the whole request/);
    expect(limitedOf().harness.smtp.messages).toHaveLength(1);
  });
});
