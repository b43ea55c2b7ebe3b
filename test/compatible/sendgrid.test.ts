import { Client } from '@sendgrid/client';
import sendgrid from '@sendgrid/mail';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { httpRoutes } from '../../shared/api/routes.ts';
import {
  billingCaller,
  type CompatibleHost,
  parsedMessage,
  sdkCaller,
  startCompatibleHost,
} from '../support/compatibleHost.ts';

/**
 * The SendGrid endpoint driven by SendGrid's official Node SDK (@sendgrid/mail), pointed at the relay over
 * real HTTP on loopback, as an app moved onto the relay is: its API key is a relay caller key, and its base
 * URL is set after the key (setApiKey resets it).
 */
let relay: CompatibleHost;

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

const clientWith = (apiKey: string) => mailServiceFor(relay.origin, apiKey);

interface SendGridFailure {
  code: number;
  response: { body: { errors: { message: string; field: string | null; help: string | null }[] } };
}

async function failureOf(send: Promise<unknown>): Promise<SendGridFailure> {
  try {
    await send;
  } catch (error) {
    return error as SendGridFailure;
  }
  throw new Error('the SDK resolved; a failure was expected');
}

const pdf = Buffer.from('%PDF-1.7\n% relay test attachment \u00ff\n', 'latin1');
const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

beforeAll(async () => {
  relay = await startCompatibleHost();
});

afterAll(async () => {
  await relay?.close();
});

beforeEach(async () => {
  await relay.harness.freshSmtp();
});

describe('SendGrid v3 mail send through @sendgrid/mail', () => {
  it('is registered anonymous: the SDK cannot send a function key, so the caller key is the only key', () => {
    expect(httpRoutes.sendgridSend.authLevel).toBe('anonymous');
    expect(httpRoutes.sendgridSend.callerKey).toBe('bearerCallerKey');
  });

  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments and an inline image', async () => {
    const [response] = await clientWith(sdkCaller.apiKey).send({
      from: { email: 'alerts@contoso.com', name: 'Contoso Alerts' },
      to: [{ email: 'ops@contoso.com', name: 'Ops Team' }, 'oncall@fabrikam.com'],
      cc: 'lead@contoso.com',
      bcc: 'audit@contoso.com',
      replyTo: { email: 'helpdesk@contoso.com', name: 'Help Desk' },
      subject: 'Disk full on db-01 — 97 %',
      text: 'sda1 is at 97 %.',
      html: '<p>sda1 is at <b>97 %</b>.</p><img src="cid:chart">',
      attachments: [
        { content: pdf.toString('base64'), filename: 'report.pdf', type: 'application/pdf' },
        {
          content: png.toString('base64'),
          filename: 'chart.png',
          type: 'image/png',
          disposition: 'inline',
          contentId: 'chart',
        },
      ],
      headers: { 'X-Ticket': 'INC-1234' },
      categories: ['disk', 'db'],
    });
    expect(response.statusCode).toBe(202);
    expect(response.body).toBe('');

    const [received] = await relay.harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { envelopeFrom, envelopeTo, mail } = await parsedMessage(received);
    expect(envelopeFrom).toBe('alerts@contoso.com');
    expect(envelopeTo.sort()).toEqual(
      ['audit@contoso.com', 'lead@contoso.com', 'oncall@fabrikam.com', 'ops@contoso.com'].sort(),
    );
    expect(response.headers['x-message-id']).toBe(mail.messageId?.replace(/^<|>$/g, ''));
    expect(mail.from?.value).toEqual([{ address: 'alerts@contoso.com', name: 'Contoso Alerts' }]);
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.value : []).toEqual([
      { address: 'ops@contoso.com', name: 'Ops Team' },
      { address: 'oncall@fabrikam.com', name: '' },
    ]);
    expect(mail.headers.get('bcc')).toBeUndefined();
    expect(received.raw.toString('latin1')).not.toContain('audit@contoso.com');
    expect(mail.replyTo?.value).toEqual([{ address: 'helpdesk@contoso.com', name: 'Help Desk' }]);
    expect(mail.subject).toBe('Disk full on db-01 — 97 %');
    expect(mail.text?.trim()).toBe('sda1 is at 97 %.');
    expect(mail.html).toBe('<p>sda1 is at <b>97 %</b>.</p><img src="cid:chart">');
    const report = mail.attachments.find((file) => file.filename === 'report.pdf');
    const chart = mail.attachments.find((file) => file.filename === 'chart.png');
    expect(mail.attachments).toHaveLength(2);
    expect(report?.contentType).toBe('application/pdf');
    expect(report?.content.equals(pdf)).toBe(true);
    expect(chart?.contentId).toBe('<chart>');
    expect(chart?.content.equals(png)).toBe(true);
    expect(mail.headers.get('x-ticket')).toBe('INC-1234');
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
    const received = await relay.harness.smtp.waitForMessages(2);
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
    const failure = await failureOf(
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
    expect(relay.harness.smtp.messages).toHaveLength(0);
    expect(relay.logLines.join('\n')).not.toContain('SG.not-a-caller-key');
  });

  it('names the field of an invalid address as the request has it', async () => {
    const failure = await failureOf(
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
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });

  it('refuses templates and scheduled sending by field, instead of dropping them', async () => {
    const failure = await failureOf(
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
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 403 naming its from, before any personalization is sent', async () => {
    const failure = await failureOf(
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
    expect(relay.harness.smtp.messages).toHaveLength(0);
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
      const response = await fetch(`${relay.origin}/api/sendgrid/v3/mail/send`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(message),
      });
      expect(response.status).toBe(401);
      const body = (await response.json()) as SendGridFailure['response']['body'];
      expect(body.errors[0]?.message).toMatch(/no bearer token/);
    }
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });
});

describe('a SendGrid request whose later personalization fails after the first was sent', () => {
  let limited: CompatibleHost;

  beforeAll(async () => {
    // One message a minute and no waiting: the second personalization meets the mailbox's rate limit.
    limited = await startCompatibleHost({
      settings: { RELAY_MAILBOX_RATE_PER_MINUTE: '1', RELAY_RATE_LIMIT_WAIT_SECONDS: '0' },
    });
  });

  afterAll(async () => {
    await limited?.close();
  });

  it('answers 502 partly_sent naming the Message-ID that went out, never "nothing was sent"', async () => {
    const failure = await failureOf(
      mailServiceFor(limited.origin, sdkCaller.apiKey).send({
        from: 'alerts@contoso.com',
        subject: 'Shift change',
        text: 'You are on call tonight.',
        personalizations: [
          { to: [{ email: 'first@contoso.com' }] },
          { to: [{ email: 'second@contoso.com' }] },
        ],
      }),
    );
    const [delivered] = await limited.harness.smtp.waitForMessages(1);
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
    expect(limited.harness.smtp.messages).toHaveLength(1);
  });
});
