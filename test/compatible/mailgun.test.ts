import FormData from 'form-data';
import Mailgun from 'mailgun.js';
import { describe, expect, it } from 'vitest';
import {
  billingCaller,
  type CompatibleHost,
  diskAlert,
  expectDiskAlertDelivered,
  failureOf,
  mailboxText,
  parsedMessage,
  sdkCaller,
  useCompatibleHost,
} from '../support/compatibleHost.ts';

/**
 * The Mailgun endpoint driven by Mailgun's official Node SDK (mailgun.js), pointed at the relay over real
 * HTTP on loopback, as an app moved onto the relay is: its url is `<app>/api/mailgun` and its API key a
 * relay caller key (HTTP Basic, user `api`).
 */
const relayOf = useCompatibleHost();

function clientWith(key: string, formData: unknown = FormData, host: CompatibleHost = relayOf()) {
  const mailgun = new Mailgun(formData as ConstructorParameters<typeof Mailgun>[0]);
  return mailgun.client({ username: 'api', key, url: `${host.origin}/api/mailgun` });
}

/** What mailgun.js rejects with: its APIError, with the HTTP status and the body's message as details. */
interface MailgunFailure {
  type: string;
  status: number;
  details: string;
}

/**
 * An unstructured header's text. nodemailer writes a value holding a quote (as JSON does) as RFC 2047
 * Q-encoded words, which mail clients decode and mailparser leaves as they are for headers it does not know.
 */
function decodedHeader(value: unknown): string {
  const joined = String(value).replace(/\?=\s+=\?/g, '?==?');
  return joined.replace(/=\?utf-8\?q\?([^?]*)\?=/gi, (_word, encoded: string) => {
    const bytes = encoded
      .replace(/_/g, ' ')
      .replace(/=([0-9a-f]{2})/gi, (_escape, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
    return Buffer.from(bytes, 'latin1').toString('utf8');
  });
}

const simpleMessage = {
  from: 'alerts@contoso.com',
  to: 'ops@contoso.com',
  subject: 'x',
  text: 'x',
};

describe('Mailgun send message through mailgun.js', () => {
  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments, an inline image, tags and variables', async () => {
    const result = await clientWith(sdkCaller.apiKey).messages.create('contoso.com', {
      from: mailboxText(diskAlert.from),
      // A repeated field and a comma list in one value, as Mailgun takes both.
      to: [
        mailboxText(diskAlert.to[0] ?? diskAlert.from),
        `${diskAlert.to[1]?.address}, second@fabrikam.com`,
      ],
      cc: mailboxText(diskAlert.cc),
      bcc: diskAlert.bcc,
      'h:Reply-To': mailboxText(diskAlert.replyTo),
      subject: diskAlert.subject,
      text: diskAlert.text,
      html: diskAlert.html('chart.png'),
      attachment: [{ data: diskAlert.report, filename: 'Bericht März.pdf', contentType: 'application/pdf' }],
      inline: [{ data: diskAlert.chart, filename: 'chart.png', contentType: 'image/png' }],
      'h:X-Ticket': diskAlert.ticket,
      'o:tag': ['disk', 'db'],
      'v:host': 'db-01',
      'v:ticket-id': 'INC-1234',
    });

    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    const mail = await expectDiskAlertDelivered(received, {
      chartId: 'chart.png',
      reportName: 'Bericht März.pdf',
      extraTo: ['second@fabrikam.com'],
    });
    expect(result).toEqual({ status: 200, id: mail.messageId, message: 'Queued. Thank you.' });
    expect(result.id).toMatch(/^<.+@.+>$/);
    expect(mail.headers.get('x-mailgun-tag')).toBe('disk, db');
    expect(JSON.parse(decodedHeader(mail.headers.get('x-mailgun-variables')))).toEqual({
      host: 'db-01',
      'ticket-id': 'INC-1234',
    });
  });

  it("delivers through the SDK built on the platform's FormData, types taken from the file names", async () => {
    const result = await clientWith(sdkCaller.apiKey, globalThis.FormData).messages.create(
      'notify.contoso.com',
      {
        from: 'reports@notify.contoso.com',
        to: 'ops@contoso.com',
        subject: 'Weekly report',
        html: '<img src="cid:chart.png">',
        attachment: [{ data: diskAlert.report, filename: 'report.pdf' }],
        inline: [{ data: diskAlert.chart, filename: 'chart.png' }],
        // Sent by apps that always batch: with one To address it is one ordinary message.
        'recipient-variables': '{}',
      },
    );
    expect(result.status).toBe(200);
    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { mail } = await parsedMessage(received);
    const files = mail.attachments.map((file) => [file.filename, file.contentType, file.contentId]);
    expect(files.sort()).toEqual([
      ['chart.png', 'image/png', '<chart.png>'],
      ['report.pdf', 'application/pdf', undefined],
    ]);
    const chart = mail.attachments.find((file) => file.filename === 'chart.png');
    expect(chart?.content.equals(diskAlert.chart)).toBe(true);
  });

  it('accepts a urlencoded form from a sending subdomain, as apps without attachments post one', async () => {
    const response = await fetch(`${relayOf().origin}/api/mailgun/v3/mg.contoso.com/messages`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`api:${sdkCaller.apiKey}`).toString('base64')}` },
      body: new URLSearchParams([
        ['from', 'alerts@contoso.com'],
        ['to', 'ops@contoso.com'],
        ['to', 'oncall@fabrikam.com'],
        ['subject', 'Plain form'],
        ['text', 'Sent as application/x-www-form-urlencoded.'],
        ['o:tracking', 'no'],
        ['o:testmode', 'false'],
      ]),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ message: 'Queued. Thank you.' });
    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { envelopeTo, mail } = await parsedMessage(received);
    expect(envelopeTo.sort()).toEqual(['oncall@fabrikam.com', 'ops@contoso.com']);
    expect(mail.text?.trim()).toBe('Sent as application/x-www-form-urlencoded.');
  });

  it('answers a key that is no caller with 401 in Mailgun’s error shape, and sends nothing', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith('key-not-a-caller-0123').messages.create('contoso.com', simpleMessage),
    );
    expect(failure.type).toBe('MailgunAPIError');
    expect(failure.status).toBe(401);
    expect(failure.details).toMatch(
      /^Forbidden: The HTTP Basic password .* does not match any configured caller/,
    );
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
    expect(relayOf().logLines.join('\n')).not.toContain('key-not-a-caller-0123');
    expect(relayOf().logLines.join('\n')).not.toContain(sdkCaller.apiKey);
  });

  it('answers a request without HTTP Basic credentials with 401 { message }, and sends nothing', async () => {
    const response = await fetch(`${relayOf().origin}/api/mailgun/v3/contoso.com/messages`, {
      method: 'POST',
      body: new URLSearchParams(simpleMessage),
    });
    expect(response.status).toBe(401);
    const body = (await response.json()) as { message: string };
    expect(Object.keys(body)).toEqual(['message']);
    expect(body.message).toMatch(
      /^Forbidden: The request has no HTTP Basic password \(user name api, the caller key as password\)/,
    );
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('names the field of an invalid address as the form has it', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith(sdkCaller.apiKey).messages.create('contoso.com', {
        ...simpleMessage,
        to: ['ops@contoso.com', 'not an address'],
      }),
    );
    expect(failure.status).toBe(400);
    expect(failure.details).toMatch(/^to\[1\]: "not an address" is not a valid address/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses templates, batches, scheduled sending, tracking and headers it cannot set, naming each field', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith(sdkCaller.apiKey).messages.create('contoso.com', {
        ...simpleMessage,
        to: 'ops@contoso.com, oncall@fabrikam.com',
        template: 'welcome',
        'recipient-variables': '{"ops@contoso.com": {"first": "Ops"}}',
        'o:deliverytime': 'Thu, 13 Oct 2033 18:02:00 +0000',
        'o:tracking-clicks': 'yes',
        'h:List-Unsubscribe': '<https://contoso.com/unsubscribe>',
      }),
    );
    expect(failure.status).toBe(400);
    for (const field of [
      'template',
      'recipient-variables',
      'o:deliverytime',
      'o:tracking-clicks',
      'h:List-Unsubscribe',
    ])
      expect(failure.details).toContain(`${field}: is not supported`);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses a From outside the sending domain of the URL, as Mailgun does', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith(sdkCaller.apiKey).messages.create('fabrikam.com', simpleMessage),
    );
    expect(failure.status).toBe(400);
    expect(failure.details).toMatch(/^from: must be an address in fabrikam\.com/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 403, and sends nothing', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith(billingCaller.apiKey).messages.create('contoso.com', simpleMessage),
    );
    expect(failure.status).toBe(403);
    expect(failure.details).toMatch(/alerts@contoso\.com/);
    expect(failure.details).toMatch(/RELAY_CALLERS/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses a JSON body with a 4xx naming the form types it takes', async () => {
    const response = await fetch(`${relayOf().origin}/api/mailgun/v3/contoso.com/messages`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`api:${sdkCaller.apiKey}`).toString('base64')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify(simpleMessage),
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toMatch(/multipart\/form-data/);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });
});

describe('Mailgun request size limit', () => {
  // 4 KiB messages: the body limit is then 4 KiB + 1 MiB (jsonBodyLimit), so a 1.2 MiB attachment is over it.
  const smallOf = useCompatibleHost({ settings: { RELAY_MAX_MESSAGE_BYTES: '4096' } });

  const oversized = Buffer.alloc(1.2 * 1024 * 1024, 'a');

  it('answers a body over the limit with 413 by its Content-Length, and sends nothing', async () => {
    const failure = await failureOf<MailgunFailure>(
      clientWith(sdkCaller.apiKey, FormData, smallOf()).messages.create('contoso.com', {
        ...simpleMessage,
        attachment: [{ data: oversized, filename: 'big.txt' }],
      }),
    );
    expect(failure.status).toBe(413);
    expect(failure.details).toMatch(/larger than \d+ bytes/);
    expect(smallOf().harness.smtp.messages).toHaveLength(0);
  });

  it('counts a chunked body that declares no length, and refuses it with 413', async () => {
    const form = new globalThis.FormData();
    for (const [name, value] of Object.entries(simpleMessage)) form.append(name, value);
    form.append('attachment', new Blob([oversized]), 'big.txt');
    const encoded = new Response(form);
    const response = await fetch(`${smallOf().origin}/api/mailgun/v3/contoso.com/messages`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`api:${sdkCaller.apiKey}`).toString('base64')}`,
        'content-type': encoded.headers.get('content-type') ?? '',
      },
      body: encoded.body,
      duplex: 'half',
    } as RequestInit);
    expect(response.status).toBe(413);
    expect(smallOf().harness.smtp.messages).toHaveLength(0);
  });
});
