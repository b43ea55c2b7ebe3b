import * as postmark from 'postmark';
import { describe, expect, it } from 'vitest';
import {
  billingCaller,
  diskAlert,
  expectDiskAlertDelivered,
  failureOf,
  mailboxText,
  parsedMessage,
  sdkCaller,
  useCompatibleHost,
} from '../support/compatibleHost.ts';

/**
 * The Postmark endpoint driven by Postmark's official Node SDK (postmark), pointed at the relay over real
 * HTTP on loopback, as an app moved onto the relay is: its server token is a relay caller key, and its
 * requestHost is the relay's host and port (the SDK puts /email right after it).
 */
const relayOf = useCompatibleHost();

function clientWith(serverToken: string): postmark.ServerClient {
  return new postmark.ServerClient(serverToken, {
    requestHost: new URL(relayOf().origin).host,
    useHttps: false,
  });
}

const wrongToken = 'pm-not-a-caller-key-0123456789';

describe('Postmark send email through the postmark SDK', () => {
  it('delivers what the SDK was given: names, cc, bcc, reply-to, both bodies, attachments, an inline image, headers, tag and metadata', async () => {
    const response = await clientWith(sdkCaller.apiKey).sendEmail({
      From: mailboxText(diskAlert.from),
      To: diskAlert.to.map(mailboxText).join(', '),
      Cc: mailboxText(diskAlert.cc),
      Bcc: diskAlert.bcc,
      ReplyTo: mailboxText(diskAlert.replyTo),
      Subject: diskAlert.subject,
      TextBody: diskAlert.text,
      HtmlBody: diskAlert.html('chart.png'),
      Attachments: [
        {
          Name: 'report.pdf',
          Content: diskAlert.report.toString('base64'),
          ContentType: 'application/pdf',
          ContentID: null,
        },
        {
          Name: 'chart.png',
          Content: diskAlert.chart.toString('base64'),
          ContentType: 'image/png',
          ContentID: 'cid:chart.png',
        },
      ],
      Headers: [{ Name: 'X-Ticket', Value: diskAlert.ticket }],
      Tag: 'disk-alerts',
      Metadata: { host: 'db-01', 'ticket-id': 'INC-1234' },
      TrackOpens: false,
      TrackLinks: postmark.Models.LinkTrackingOptions.None,
      MessageStream: 'outbound',
    });

    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    const mail = await expectDiskAlertDelivered(received, { chartId: 'chart.png' });
    expect(response.ErrorCode).toBe(0);
    expect(response.Message).toBe('OK');
    expect(response.MessageID).toBe(mail.messageId?.replace(/^<|>$/g, ''));
    expect(Number.isNaN(Date.parse(response.SubmittedAt))).toBe(false);
    // As Postmark: the request's To, echoed as it was sent.
    expect(response.To).toBe('Ops Team <ops@contoso.com>, oncall@fabrikam.com');
    expect(mail.headers.get('x-pm-tag')).toBe('disk-alerts');
    expect(mail.headers.get('x-pm-metadata-host')).toBe('db-01');
    expect(mail.headers.get('x-pm-metadata-ticket-id')).toBe('INC-1234');
    expect(relayOf().logLines.join('\n')).not.toContain(sdkCaller.apiKey);
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
          Content: diskAlert.chart.toString('base64'),
          ContentType: 'image/png',
          ContentId: 'cid:chart.png',
        },
      ],
    };
    const response = await clientWith(sdkCaller.apiKey).sendEmail(dotnetStyle as unknown as postmark.Message);
    expect(response.ErrorCode).toBe(0);

    const [received] = await relayOf().harness.smtp.waitForMessages(1);
    if (received === undefined) throw new Error('nothing arrived');
    const { envelopeTo, mail } = await parsedMessage(received);
    expect(envelopeTo).toEqual(['ops@contoso.com']);
    expect(mail.attachments[0]?.contentId).toBe('<chart.png>');
    expect(mail.attachments[0]?.content.equals(diskAlert.chart)).toBe(true);
  });

  it('answers a server token that is no caller with 401 and ErrorCode 10, as InvalidAPIKeyError, and sends nothing', async () => {
    const failure = await failureOf<postmark.Errors.PostmarkError>(
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
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
    expect(relayOf().logLines.join('\n')).not.toContain(wrongToken);
  });

  it('answers a request without a server token with 401 and ErrorCode 10 (the SDK itself refuses to send one)', async () => {
    expect(() => clientWith('')).toThrow(/A valid API token must be provided/);
    const response = await fetch(`${relayOf().origin}/email`, {
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
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('names the fields of invalid input as the request has them, with 422 and ErrorCode 300', async () => {
    const failure = await failureOf<postmark.Errors.PostmarkError>(
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
    expect(relayOf().harness.smtp.messages).toHaveLength(0);

    const relayChecked = await failureOf<postmark.Errors.PostmarkError>(
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
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('refuses tracking, other message streams and templates by field, instead of dropping them', async () => {
    const failure = await failureOf<postmark.Errors.PostmarkError>(
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
    const templated = await failureOf<postmark.Errors.PostmarkError>(
      clientWith(sdkCaller.apiKey).sendEmail(withTemplateId as unknown as postmark.Message),
    );
    expect(templated.code).toBe(300);
    expect(templated.message).toMatch(/^TemplateId: is not supported: .*render the template in the app/);

    // The template endpoint is not served at all: the SDK gets a 404.
    const templateEndpoint = await failureOf<postmark.Errors.PostmarkError>(
      clientWith(sdkCaller.apiKey).sendEmailWithTemplate({
        From: 'alerts@contoso.com',
        To: 'ops@contoso.com',
        TemplateAlias: 'welcome',
        TemplateModel: { name: 'Ops' },
      }),
    );
    expect(templateEndpoint.statusCode).toBe(404);
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
  });

  it('answers a sender the caller may not use with 422 and ErrorCode 400 naming From, and sends nothing', async () => {
    const failure = await failureOf<postmark.Errors.PostmarkError>(
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
    expect(relayOf().harness.smtp.messages).toHaveLength(0);
    expect(relayOf().logLines.join('\n')).not.toContain(billingCaller.apiKey);
  });
});
