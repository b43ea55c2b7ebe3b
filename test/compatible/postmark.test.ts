import * as postmark from 'postmark';
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
 * The Postmark endpoint driven by Postmark's official Node SDK (postmark), pointed at the relay over real
 * HTTP on loopback, as an app moved onto the relay is: its server token is a relay caller key, and its
 * requestHost is the relay's host and port (the SDK puts /email right after it).
 */
let relay: CompatibleHost;

function clientWith(serverToken: string): postmark.ServerClient {
  return new postmark.ServerClient(serverToken, {
    requestHost: new URL(relay.origin).host,
    useHttps: false,
  });
}

async function failureOf(send: Promise<unknown>): Promise<postmark.Errors.PostmarkError> {
  try {
    await send;
  } catch (error) {
    return error as postmark.Errors.PostmarkError;
  }
  throw new Error('the SDK resolved; a failure was expected');
}

const pdf = Buffer.from('%PDF-1.7\n% relay test attachment \u00ff\n', 'latin1');
const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
const wrongToken = 'pm-not-a-caller-key-0123456789';

beforeAll(async () => {
  relay = await startCompatibleHost();
});

afterAll(async () => {
  await relay?.close();
});

beforeEach(async () => {
  await relay.harness.freshSmtp();
});

describe('Postmark send email through the postmark SDK', () => {
  it('is registered anonymous at the server root: the SDK takes only a host and sends no function key', () => {
    expect(httpRoutes.postmarkSend.route).toBe('email');
    expect(httpRoutes.postmarkSend.authLevel).toBe('anonymous');
    expect(httpRoutes.postmarkSend.callerKey).toBe('postmarkServerToken');
  });

  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments, an inline image, headers, tag and metadata', async () => {
    const response = await clientWith(sdkCaller.apiKey).sendEmail({
      From: 'Contoso Alerts <alerts@contoso.com>',
      To: 'Ops Team <ops@contoso.com>, oncall@fabrikam.com',
      Cc: 'lead@contoso.com',
      Bcc: 'audit@contoso.com',
      ReplyTo: 'Help Desk <helpdesk@contoso.com>',
      Subject: 'Disk full on db-01 — 97 %',
      TextBody: 'sda1 is at 97 %.',
      HtmlBody: '<p>sda1 is at <b>97 %</b>.</p><img src="cid:chart.png">',
      Attachments: [
        {
          Name: 'report.pdf',
          Content: pdf.toString('base64'),
          ContentType: 'application/pdf',
          ContentID: null,
        },
        {
          Name: 'chart.png',
          Content: png.toString('base64'),
          ContentType: 'image/png',
          ContentID: 'cid:chart.png',
        },
      ],
      Headers: [{ Name: 'X-Ticket', Value: 'INC-1234' }],
      Tag: 'disk-alerts',
      Metadata: { host: 'db-01', 'ticket-id': 'INC-1234' },
      TrackOpens: false,
      TrackLinks: postmark.Models.LinkTrackingOptions.None,
      MessageStream: 'outbound',
    });

    const [received] = await relay.harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { envelopeFrom, envelopeTo, mail } = await parsedMessage(received);
    expect(response.ErrorCode).toBe(0);
    expect(response.Message).toBe('OK');
    expect(response.MessageID).toBe(mail.messageId?.replace(/^<|>$/g, ''));
    expect(Number.isNaN(Date.parse(response.SubmittedAt))).toBe(false);
    // As Postmark: the request's To, echoed as it was sent.
    expect(response.To).toBe('Ops Team <ops@contoso.com>, oncall@fabrikam.com');
    expect(envelopeFrom).toBe('alerts@contoso.com');
    expect(envelopeTo.sort()).toEqual(
      ['audit@contoso.com', 'lead@contoso.com', 'oncall@fabrikam.com', 'ops@contoso.com'].sort(),
    );
    expect(mail.from?.value).toEqual([{ address: 'alerts@contoso.com', name: 'Contoso Alerts' }]);
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.value : []).toEqual([
      { address: 'ops@contoso.com', name: 'Ops Team' },
      { address: 'oncall@fabrikam.com', name: '' },
    ]);
    expect(mail.cc && !Array.isArray(mail.cc) ? mail.cc.value : []).toEqual([
      { address: 'lead@contoso.com', name: '' },
    ]);
    expect(mail.headers.get('bcc')).toBeUndefined();
    expect(received.raw.toString('latin1')).not.toContain('audit@contoso.com');
    expect(mail.replyTo?.value).toEqual([{ address: 'helpdesk@contoso.com', name: 'Help Desk' }]);
    expect(mail.subject).toBe('Disk full on db-01 — 97 %');
    expect(mail.text?.trim()).toBe('sda1 is at 97 %.');
    expect(mail.html).toBe('<p>sda1 is at <b>97 %</b>.</p><img src="cid:chart.png">');
    const report = mail.attachments.find((file) => file.filename === 'report.pdf');
    const chart = mail.attachments.find((file) => file.filename === 'chart.png');
    expect(report?.contentType).toBe('application/pdf');
    expect(report?.content.equals(pdf)).toBe(true);
    expect(chart?.contentType).toBe('image/png');
    expect(chart?.contentId).toBe('<chart.png>');
    expect(chart?.content.equals(png)).toBe(true);
    expect(mail.headers.get('x-ticket')).toBe('INC-1234');
    expect(mail.headers.get('x-pm-tag')).toBe('disk-alerts');
    expect(mail.headers.get('x-pm-metadata-host')).toBe('db-01');
    expect(mail.headers.get('x-pm-metadata-ticket-id')).toBe('INC-1234');
    expect(relay.logLines.join('\n')).not.toContain(sdkCaller.apiKey);
  });

  it('reads field names in any case, as Postmark does: its .NET SDK writes ContentId and empty fields as null', async () => {
    const dotnetStyle = {
      From: 'reports@notify.contoso.com',
      To: 'ops@contoso.com,',
      Cc: null,
      Subject: 'Chart',
      HtmlBody: '<img src="cid:chart.png">',
      TextBody: null,
      TrackOpens: null,
      TrackLinks: 'None',
      Headers: [],
      Attachments: [
        {
          Name: 'chart.png',
          Content: png.toString('base64'),
          ContentType: 'image/png',
          ContentId: 'cid:chart.png',
        },
      ],
    };
    const response = await clientWith(sdkCaller.apiKey).sendEmail(dotnetStyle as unknown as postmark.Message);
    expect(response.ErrorCode).toBe(0);

    const [received] = await relay.harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { envelopeTo, mail } = await parsedMessage(received);
    expect(envelopeTo).toEqual(['ops@contoso.com']);
    expect(mail.attachments[0]?.contentId).toBe('<chart.png>');
    expect(mail.attachments[0]?.content.equals(png)).toBe(true);
  });

  it('answers a server token that is no caller with 401 and ErrorCode 10, as InvalidAPIKeyError, and sends nothing', async () => {
    const failure = await failureOf(
      clientWith(wrongToken).sendEmail({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com',
        Subject: 'x',
        TextBody: 'x',
      }),
    );
    expect(failure).toBeInstanceOf(postmark.Errors.InvalidAPIKeyError);
    expect(failure.statusCode).toBe(401);
    expect(failure.code).toBe(10);
    expect(failure.message).toMatch(/X-Postmark-Server-Token header does not match any configured caller/);
    expect(relay.harness.smtp.messages).toHaveLength(0);
    expect(relay.logLines.join('\n')).not.toContain(wrongToken);
  });

  it('answers a request without a server token with 401 and ErrorCode 10 (the SDK itself refuses to send one)', async () => {
    expect(() => clientWith('')).toThrow(/A valid API token must be provided/);
    const response = await fetch(`${relay.origin}/email`, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com',
        Subject: 'x',
        TextBody: 'x',
      }),
    });
    expect(response.status).toBe(401);
    const body = (await response.json()) as { ErrorCode: number; Message: string };
    expect(body.ErrorCode).toBe(10);
    expect(body.Message).toMatch(/no X-Postmark-Server-Token header/);
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });

  it('names the fields of invalid input as the request has them, with 422 and ErrorCode 300', async () => {
    const failure = await failureOf(
      clientWith(sdkCaller.apiKey).sendEmail({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com, not an address',
        Subject: 'x',
        TextBody: 'x',
        Attachments: [
          { Name: 'notes.txt', Content: 'not base64!', ContentType: 'text/plain', ContentID: null },
        ],
        Metadata: { 'order id': '42' },
      }),
    );
    expect(failure).toBeInstanceOf(postmark.Errors.InvalidEmailRequestError);
    expect(failure.statusCode).toBe(422);
    expect(failure.code).toBe(300);
    // The mapping's own checks come first; the relay's checks follow once those pass.
    expect(failure.message).toMatch(/^Metadata\.order id: is sent as the X-PM-Metadata-<key> header/);
    expect(relay.harness.smtp.messages).toHaveLength(0);

    const relayChecked = await failureOf(
      clientWith(sdkCaller.apiKey).sendEmail({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com, not an address',
        Subject: 'x',
        TextBody: 'x',
        Attachments: [
          { Name: 'notes.txt', Content: 'not base64!', ContentType: 'text/plain', ContentID: null },
        ],
      }),
    );
    expect(relayChecked).toBeInstanceOf(postmark.Errors.InvalidEmailRequestError);
    expect(relayChecked.code).toBe(300);
    expect(relayChecked.message).toMatch(
      /^To: .*not a valid address; Attachments\[0\]\.Content: must be base64/,
    );
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });

  it('refuses tracking, other message streams and templates by field, instead of dropping them', async () => {
    const failure = await failureOf(
      clientWith(sdkCaller.apiKey).sendEmail({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com',
        Subject: 'x',
        HtmlBody: '<p>x</p>',
        TrackOpens: true,
        TrackLinks: postmark.Models.LinkTrackingOptions.HtmlAndText,
        MessageStream: 'broadcast',
      }),
    );
    expect(failure).toBeInstanceOf(postmark.Errors.InvalidEmailRequestError);
    expect(failure.code).toBe(300);
    expect(failure.message).toMatch(/^TrackOpens: is not supported: .*; TrackLinks: .*; MessageStream: /);

    const withTemplateId = { From: 'alerts@contoso.com', To: 'ops@contoso.com', TemplateId: 1234567 };
    const templated = await failureOf(
      clientWith(sdkCaller.apiKey).sendEmail(withTemplateId as unknown as postmark.Message),
    );
    expect(templated.code).toBe(300);
    expect(templated.message).toMatch(/^TemplateId: is not supported: .*render the template in the app/);

    // The template endpoint is not served at all: the SDK gets a 404.
    const templateEndpoint = await failureOf(
      clientWith(sdkCaller.apiKey).sendEmailWithTemplate({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com',
        TemplateAlias: 'welcome',
        TemplateModel: { name: 'Ops' },
      }),
    );
    expect(templateEndpoint.statusCode).toBe(404);
    expect(relay.harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 422 and ErrorCode 400 naming From, and sends nothing', async () => {
    const failure = await failureOf(
      clientWith(billingCaller.apiKey).sendEmail({
        From: 'Contoso Alerts <alerts@contoso.com>',
        To: 'customer@fabrikam.com',
        Subject: 'Invoice',
        TextBody: 'Your invoice',
      }),
    );
    expect(failure).toBeInstanceOf(postmark.Errors.ApiInputError);
    expect(failure.statusCode).toBe(422);
    expect(failure.code).toBe(400);
    expect(failure.message).toMatch(/^From: .*RELAY_CALLERS/);
    expect(relay.harness.smtp.messages).toHaveLength(0);
    expect(relay.logLines.join('\n')).not.toContain(billingCaller.apiKey);
  });
});
