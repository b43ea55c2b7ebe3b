import type { HttpResponseInit } from '@azure/functions';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RelayHttpHandler } from '../../functions/httpEdge.ts';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { startSmtpPeer } from '../peers/smtpPeer.ts';
import { createTestCertificate } from '../peers/testCertificate.ts';
import {
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

const sendUrl = 'http://localhost:7071/api/send';
let harness: RelayHarness;
let handler: RelayHttpHandler;
const allLogLines: string[] = [];
const allResponseBodies: string[] = [];

const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };

async function post(
  body: unknown,
  headers: Record<string, string> = alertsKey,
): Promise<Omit<HttpResponseInit, 'body'> & { body: Record<string, unknown> }> {
  const { context, lines } = capturingContext();
  const response = await handler(jsonRequest(sendUrl, body, headers), context);
  allLogLines.push(...lines);
  allResponseBodies.push(JSON.stringify(response.jsonBody));
  return { ...response, body: response.jsonBody as Record<string, unknown> };
}

function errorOf(response: { body: Record<string, unknown> }): {
  code: string;
  message: string;
  remedy?: string;
  details?: unknown;
} {
  return response.body.error as { code: string; message: string; remedy?: string };
}

const simpleMessage = {
  from: 'alerts@contoso.com',
  to: 'ops@contoso.com',
  subject: 'Disk full',
  text: 'sda1 at 97%',
};

beforeAll(async () => {
  harness = await startRelayHarness();
  handler = bindHttp(send, harness.runtime);
});

afterAll(async () => {
  await harness?.close();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('POST /api/send', () => {
  it('delivers html, text, cc, bcc and an inline image intact', async () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');
    const response = await post({
      from: { address: 'alerts@contoso.com', name: 'Contoso Alerts' },
      to: ['"Ops Team" <ops@contoso.com>'],
      cc: { address: 'lead@contoso.com', name: 'Team Lead' },
      bcc: 'audit@contoso.com',
      replyTo: 'noreply@contoso.com',
      subject: 'Disk full on srv-01 – Grüße',
      text: 'sda1 is at 97%',
      html: '<p>sda1 is at <b>97%</b> <img src="cid:chart@relay"></p>',
      attachments: [
        {
          filename: 'chart.png',
          contentType: 'image/png',
          content: png.toString('base64'),
          contentId: 'chart@relay',
        },
      ],
      headers: { 'X-Ticket': 'INC-4711' },
      priority: 'high',
    });

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      sender: 'alerts@contoso.com',
      accepted: ['ops@contoso.com', 'lead@contoso.com', 'audit@contoso.com'],
      rejected: [],
    });
    expect(response.body.messageId).toMatch(/^<.+@.+>$/);
    expect(response.body.response).toMatch(/^250 /);

    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('alerts@contoso.com');
    expect(received?.envelopeFrom).toBe('alerts@contoso.com');
    expect(received?.envelopeTo).toEqual(['ops@contoso.com', 'lead@contoso.com', 'audit@contoso.com']);
    const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(mail.from?.value).toEqual([{ address: 'alerts@contoso.com', name: 'Contoso Alerts' }]);
    expect(mail.subject).toBe('Disk full on srv-01 – Grüße');
    expect(mail.text?.trim()).toBe('sda1 is at 97%');
    expect(mail.html).toContain('<b>97%</b>');
    expect(mail.headers.get('bcc')).toBeUndefined();
    expect(mail.headers.get('x-ticket')).toBe('INC-4711');
    expect(received?.raw.toString()).toMatch(/^X-Priority: 1 \(Highest\)\r$/m);
    expect(received?.raw.toString()).toMatch(/^Importance: High\r$/m);
    expect(mail.messageId).toBe(response.body.messageId);
    const [image] = mail.attachments;
    expect(image?.cid).toBe('chart@relay');
    expect(image?.contentType).toBe('image/png');
    expect(image?.content.equals(png)).toBe(true);
  });

  it('shares one token request among 100 concurrent sends and never opens more than 3 connections', async () => {
    harness.runtime.close();
    const before = harness.identity.tokenRequests.filter(
      (request) => request.grantType === 'client_credentials',
    ).length;
    // A fresh runtime has an empty token cache: every one of the 100 sends needs a token at once.
    const { createRuntime } = await import('../../shared/runtime.ts');
    const freshRuntime = createRuntime(harness.config, harness.secrets);
    const freshHandler = bindHttp(send, freshRuntime);
    const responses = await Promise.all(
      Array.from({ length: 100 }, async (_, index) => {
        const { context } = capturingContext();
        return freshHandler(
          jsonRequest(sendUrl, { ...simpleMessage, subject: `burst ${index}` }, alertsKey),
          context,
        );
      }),
    );
    freshRuntime.close();
    expect(responses.map((response) => response.status)).toEqual(Array(100).fill(200));
    const after = harness.identity.tokenRequests.filter(
      (request) => request.grantType === 'client_credentials',
    ).length;
    expect(after - before).toBe(1);
    const received = await harness.smtp.waitForMessages(100);
    expect(
      new Set(received.map((message) => message.raw.toString().match(/Subject: (burst \d+)/)?.[1])).size,
    ).toBe(100);
    expect(harness.smtp.peakOpenConnectionsByUser.get('alerts@contoso.com')).toBeLessThanOrEqual(3);
  });

  it('refuses a caller that was not granted the sender, before any SMTP connection', async () => {
    const response = await post({ ...simpleMessage, from: 'ceo@contoso.com' });
    expect(response.status).toBe(403);
    expect(errorOf(response)).toMatchObject({ code: 'sender_not_allowed' });
    expect(errorOf(response).message).toContain('ceo@contoso.com');
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('lets a caller use a sender granted by domain', async () => {
    const response = await post({ ...simpleMessage, from: 'status@notify.contoso.com' });
    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('status@notify.contoso.com');
  });

  it.each([
    ['no key', {}, 'caller_key_missing'],
    ['an unknown key', { 'x-relay-key': 'guessed-key' }, 'caller_key_invalid'],
  ])('answers 401 to a request with %s', async (_label, headers, code) => {
    const response = await post(simpleMessage, headers);
    expect(response.status).toBe(401);
    expect(errorOf(response).code).toBe(code);
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it.each([
    ['the subject', { subject: 'Hello\r\nBcc: victim@example.com' }],
    ['a recipient name', { to: { address: 'ops@contoso.com', name: 'Ops\r\nBcc: victim@example.com' } }],
    ['a recipient string', { to: 'ops@contoso.com\nBcc: victim@example.com' }],
    ['a custom header', { headers: { 'X-Ticket': 'a\r\nBcc: victim@example.com' } }],
    ['the sender name', { from: { address: 'alerts@contoso.com', name: 'A\rB' } }],
    ['a reply-to address', { replyTo: 'x@contoso.com\r\nBcc: victim@example.com' }],
  ])('rejects CR/LF injection in %s with 400 and sends nothing', async (_label, override) => {
    const response = await post({ ...simpleMessage, ...override });
    expect(response.status).toBe(400);
    expect(errorOf(response).code).toBe('invalid_request');
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('names every invalid field in a 400', async () => {
    const response = await post({
      from: 'alerts@contoso.com',
      to: [{ address: 'nope' }],
      subject: 1,
      headers: { Received: 'x' },
    });
    expect(response.status).toBe(400);
    const fields = (errorOf(response).details as { field: string }[]).map((problem) => problem.field);
    expect(fields).toEqual(expect.arrayContaining(['to[0].address', 'subject', 'headers.Received']));
  });

  it('answers malformed JSON and non-JSON bodies with 4xx', async () => {
    const malformed = await post('{"from": "alerts@contoso.com",');
    expect(malformed.status).toBe(400);
    expect(errorOf(malformed).code).toBe('invalid_json');
    const badEscape = await post(
      '{"from": "alerts@contoso.com", "subject": "quarterly-figures-\\q-confidential"}',
    );
    expect(badEscape.status).toBe(400);
    expect(errorOf(badEscape).code).toBe('invalid_json');
    expect(errorOf(badEscape).message).toMatch(/line 1, column \d+/);
    const everything = [...allLogLines, ...allResponseBodies].join('\n');
    for (const fragment of ['quarterly', 'confidential', 'alerts@contoso.com", "subject'])
      expect(everything).not.toContain(fragment);
    const { context } = capturingContext();
    const form = await handler(
      jsonRequest(sendUrl, 'a=b', { ...alertsKey, 'content-type': 'application/x-www-form-urlencoded' }),
      context,
    );
    expect(form.status).toBe(415);
  });

  it('refuses a message over the size limit with 413 and sends nothing', async () => {
    const small = await startRelayHarness({ settings: { RELAY_MAX_MESSAGE_BYTES: '20000' } });
    try {
      const smallHandler = bindHttp(send, small.runtime);
      const { context } = capturingContext();
      const content = Buffer.alloc(30_000, 7).toString('base64');
      const response = await smallHandler(
        jsonRequest(
          sendUrl,
          { ...simpleMessage, attachments: [{ filename: 'big.bin', content }] },
          alertsKey,
        ),
        context,
      );
      expect(response.status).toBe(413);
      expect(small.smtp.connectionCount).toBe(0);
    } finally {
      await small.close();
    }
  });
});

/** Every line of what reached the SMTP server, as octets between CRLFs. */
function linesOf(raw: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let end = raw.indexOf('\r\n'); end !== -1; end = raw.indexOf('\r\n', start)) {
    lines.push(raw.subarray(start, end));
    start = end + 2;
  }
  lines.push(raw.subarray(start));
  return lines;
}

const forwardedMessage = [
  'From: Mallory <mallory@fabrikam.com>',
  'To: ops@contoso.com',
  'Subject: The forwarded one',
  '',
  'Original body.',
  '',
].join('\r\n');

describe('what reaches the server conforms to RFC 5322 and RFC 2046', () => {
  it('keeps a lone message/rfc822 attachment an attachment, inside multipart/mixed, from the relay sender', async () => {
    const response = await post({
      ...simpleMessage,
      text: undefined,
      attachments: [
        {
          filename: 'forwarded.eml',
          contentType: 'message/rfc822',
          content: Buffer.from(forwardedMessage).toString('base64'),
        },
      ],
    });
    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    const mail = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/mixed' });
    expect(mail.from?.value).toEqual([{ address: 'alerts@contoso.com', name: '' }]);
    expect(mail.subject).toBe('Disk full');
    const [attached] = mail.attachments;
    expect(attached?.contentType).toBe('message/rfc822');
    expect(attached?.contentDisposition).toBe('attachment');
    expect(attached?.content.toString()).toContain('Subject: The forwarded one');
  });

  it.each([
    ['NUL', Buffer.from('Subject: x\r\n\r\nnul \u0000 here\r\n')],
    ['0xFF', Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), Buffer.from([0xff, 0xfe, 0x0d, 0x0a])])],
    ['a 5,000-octet line', Buffer.from(`Subject: x\r\n\r\n${'y'.repeat(5000)}\r\n`)],
  ])(
    'sends a message/rfc822 attachment holding %s encoded as application/octet-stream, bytes intact',
    async (_label, content) => {
      const response = await post({
        ...simpleMessage,
        attachments: [
          { filename: 'odd.eml', contentType: 'message/rfc822', content: content.toString('base64') },
        ],
      });
      expect(response.status).toBe(200);
      const [received] = await harness.smtp.waitForMessages(1);
      const raw = received?.raw ?? Buffer.alloc(0);
      expect(raw.indexOf(0)).toBe(-1);
      expect(raw.some((octet) => octet > 0x7f)).toBe(false);
      expect(Math.max(...linesOf(raw).map((line) => line.length))).toBeLessThanOrEqual(998);
      const mail = await simpleParser(raw);
      const [attached] = mail.attachments;
      // mailparser guesses a type from the filename for application/octet-stream: read the header itself.
      expect(raw.toString('latin1')).toMatch(/^Content-Type: application\/octet-stream; name=odd\.eml\r$/m);
      expect(attached?.filename).toBe('odd.eml');
      expect(attached?.content.equals(content)).toBe(true);
    },
  );

  it('refuses a multipart/* attachment type with 400 naming the field, and sends nothing', async () => {
    const response = await post({
      ...simpleMessage,
      attachments: [{ filename: 'parts', contentType: 'multipart/mixed; boundary=x', content: 'AAAA' }],
    });
    expect(response.status).toBe(400);
    expect(errorOf(response).details).toEqual([
      expect.objectContaining({ field: 'attachments[0].contentType' }),
    ]);
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('writes long subjects, X- headers and display names in lines of at most 998 octets', async () => {
    const words = (count: number) => Array.from({ length: count }, (_, index) => `word${index}`).join(' ');
    const response = await post({
      ...simpleMessage,
      from: { address: 'alerts@contoso.com', name: 'N'.repeat(200) },
      to: [`${'R'.repeat(200)} <ops@contoso.com>`, { address: 'dev@contoso.com', name: 'é'.repeat(200) }],
      subject: `${words(900)} ${'s'.repeat(900)} Grüße`,
      headers: { 'X-Long-Words': words(250), 'X-Long-Run': 'v'.repeat(900), 'X-Unicode': 'ü'.repeat(2000) },
    });
    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    const raw = received?.raw ?? Buffer.alloc(0);
    expect(Math.max(...linesOf(raw).map((line) => line.length))).toBeLessThanOrEqual(998);
    const mail = await simpleParser(raw);
    expect(mail.subject).toBe(`${words(900)} ${'s'.repeat(900)} Grüße`);
    expect(mail.headers.get('x-long-run')).toBe('v'.repeat(900));
  });

  it.each([
    ['the subject', { subject: `Report ${'s'.repeat(1000)}` }, 'subject'],
    ['an X- header', { headers: { 'X-Token-Run': 'v'.repeat(1000) } }, 'headers.X-Token-Run'],
    ['a display name in an address string', { to: `${'R'.repeat(5000)} <ops@contoso.com>` }, 'to'],
  ])(
    'refuses %s that could only go out as a line over 998 octets, and sends nothing',
    async (_label, override, field) => {
      const response = await post({ ...simpleMessage, ...override });
      expect(response.status).toBe(400);
      expect(errorOf(response).details).toEqual([expect.objectContaining({ field })]);
      expect(harness.smtp.connectionCount).toBe(0);
    },
  );

  it('refuses more than 100 X- headers with 400 naming headers, and sends nothing', async () => {
    const headers = Object.fromEntries(Array.from({ length: 101 }, (_, index) => [`X-Tag-${index}`, 'v']));
    const response = await post({ ...simpleMessage, headers });
    expect(response.status).toBe(400);
    expect(errorOf(response).details).toEqual([expect.objectContaining({ field: 'headers' })]);
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it.each([
    'X-MS-Exchange-Organization-SCL',
    'x-ms-exchange-organization-authas',
    'X-Microsoft-Antispam',
    'X-Forefront-Antispam-Report',
    'X-MS-Has-Attach',
  ])('refuses %s, a header Exchange Online trusts, with 400 naming it, and sends nothing', async (name) => {
    const response = await post({ ...simpleMessage, headers: { 'X-Ticket': 'INC-1', [name]: '-1' } });
    expect(response.status).toBe(400);
    expect(errorOf(response).details).toEqual([
      expect.objectContaining({ field: `headers.${name}`, message: expect.stringContaining('reserved') }),
    ]);
    expect(harness.smtp.connectionCount).toBe(0);
  });
});

describe('the authorized sender is the address that is sent', () => {
  it('refuses a caller granted kelvin@contoso.com sending from \u212Aelvin@contoso.com (KELVIN SIGN) with 403', async () => {
    const kelvin = await startRelayHarness({
      callers: [
        { name: 'kelvin-app', apiKey: 'caller-key-kelvin-0123456789', senders: ['kelvin@contoso.com'] },
      ],
    });
    try {
      const kelvinHandler = bindHttp(send, kelvin.runtime);
      const { context } = capturingContext();
      const response = await kelvinHandler(
        jsonRequest(
          sendUrl,
          { ...simpleMessage, from: '\u212Aelvin@contoso.com' },
          { 'x-relay-key': 'caller-key-kelvin-0123456789' },
        ),
        context,
      );
      expect(response.status).toBe(403);
      expect((response.jsonBody as { error: { code: string } }).error.code).toBe('sender_not_allowed');
      expect(kelvin.smtp.connectionCount).toBe(0);
      expect(kelvin.smtp.messages).toEqual([]);
    } finally {
      await kelvin.close();
    }
  });
});

describe('Exchange replies become errors a person can act on', () => {
  const cases = [
    {
      stage: 'auth',
      code: 535,
      text: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled',
      status: 502,
      error: 'smtp_auth_disabled',
      remedy: /Set-CASMailbox/,
    },
    {
      stage: 'auth',
      code: 535,
      text: "5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
      status: 502,
      error: 'smtp_auth_blocked_by_security_defaults',
      remedy: /security defaults/,
    },
    {
      stage: 'mail',
      code: 530,
      text: '5.7.57 Client not authenticated to send mail.',
      status: 502,
      error: 'smtp_not_authenticated',
      remedy: /smtp\.office365\.com/,
    },
    {
      stage: 'data',
      code: 554,
      text: '5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception',
      status: 502,
      error: 'send_as_denied',
      remedy: /Add-RecipientPermission/,
    },
    {
      stage: 'mail',
      code: 550,
      text: '5.7.60 SMTP; Client does not have permissions to send as this sender',
      status: 502,
      error: 'send_as_denied',
      remedy: /SendAs/,
    },
    {
      stage: 'mail',
      code: 430,
      text: '4.2.0 STOREDRV; mailbox logon failure',
      status: 502,
      error: 'mailbox_logon_failed',
      remedy: /New-ServicePrincipal/,
    },
    {
      stage: 'mail',
      code: 432,
      text: '4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending',
      status: 503,
      error: 'smtp_throttled',
      remedy: /Retry/,
      retryAfter: '60',
    },
    {
      stage: 'data',
      code: 451,
      text: '4.7.0 Temporary server error. Please try again later',
      status: 503,
      error: 'smtp_transient',
      remedy: /Retry/,
      retryAfter: '30',
    },
    {
      stage: 'data',
      code: 554,
      text: '5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded',
      status: 502,
      error: 'sent_items_full',
      remedy: /Sent Items.*RetentionPolicy/,
    },
    {
      stage: 'data',
      code: 550,
      text: '5.1.8 Access denied, bad outbound sender',
      status: 502,
      error: 'sender_restricted',
      remedy: /Restricted entities/,
    },
  ] as const;

  it('parks a mailbox Exchange reports over its daily quota: 429, and nothing more reaches SMTP until it frees', async () => {
    // Its own sender: a parked mailbox stays parked for the rest of the file.
    const overQuota = { ...simpleMessage, from: 'quota@notify.contoso.com' };
    harness.smtp.replyNext({
      stage: 'data',
      code: 554,
      message: '5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException',
    });
    const refused = await post(overQuota);
    expect(refused.status).toBe(429);
    expect(errorOf(refused)).toMatchObject({ code: 'recipient_quota_exceeded', details: { smtpCode: 554 } });
    expect(errorOf(refused).remedy).toMatch(/Wait/);
    await harness.freshSmtp();

    const next = await post(overQuota);
    expect(next.status).toBe(429);
    expect(errorOf(next).code).toBe('mailbox_rate_limited');
    expect(errorOf(next).message).toMatch(/daily recipient quota/);
    // Nothing was charged to it here, so it waits Exchange's hour.
    expect(Number((next.headers as Record<string, string>)['Retry-After'])).toBeGreaterThan(3500);
    expect(harness.smtp.messages).toHaveLength(0);
    expect(harness.smtp.authAttempts).toHaveLength(0);
  });

  it.each(cases)('$code $text -> $status $error', async (scenario) => {
    harness.smtp.replyNext({ stage: scenario.stage, code: scenario.code, message: scenario.text });
    const response = await post(simpleMessage);
    expect(response.status).toBe(scenario.status);
    expect(errorOf(response).code).toBe(scenario.error);
    expect(errorOf(response).remedy).toMatch(scenario.remedy);
    expect(errorOf(response).details).toMatchObject({
      smtpCode: scenario.code,
      mailbox: 'alerts@contoso.com',
    });
    if ('retryAfter' in scenario)
      expect(response.headers).toMatchObject({ 'Retry-After': scenario.retryAfter });
    expect(harness.smtp.messages).toHaveLength(0);
  });

  it('fetches one fresh token after 535 5.7.3 and delivers on the retry', async () => {
    const tokenRequestsBefore = harness.identity.tokenRequests.length;
    harness.smtp.replyNext({ stage: 'auth', code: 535, message: '5.7.3 Authentication unsuccessful' });
    const response = await post(simpleMessage);
    expect(response.status).toBe(200);
    expect(harness.identity.tokenRequests.length - tokenRequestsBefore).toBe(1);
    expect(await harness.smtp.waitForMessages(1)).toHaveLength(1);
  });

  it('gives up after the fresh token is rejected too, with the Exchange-side remedy', async () => {
    harness.smtp.replyNext({
      stage: 'auth',
      code: 535,
      message: '5.7.3 Authentication unsuccessful',
      times: 2,
    });
    const response = await post(simpleMessage);
    expect(response.status).toBe(502);
    expect(errorOf(response).code).toBe('smtp_auth_rejected');
    expect(errorOf(response).remedy).toMatch(/Add-MailboxPermission/);
    expect(harness.smtp.messages).toHaveLength(0);
  });

  it('reports all recipients rejected with 422 and the addresses', async () => {
    harness.smtp.replyNext({
      stage: 'rcpt',
      code: 550,
      message: '5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
    });
    const response = await post(simpleMessage);
    expect(response.status).toBe(422);
    expect(errorOf(response).code).toBe('recipients_rejected');
    expect(errorOf(response).message).toContain('ops@contoso.com');
  });
});

describe('identity and TLS failures', () => {
  it('says the client secret is wrong when Entra ID answers AADSTS7000215', async () => {
    const broken = await startRelayHarness({ storeClientSecret: false });
    try {
      await broken.secrets.setSecret(broken.config.identity.clientSecretName, 'stale-secret-value');
      const brokenHandler = bindHttp(send, broken.runtime);
      const { context, lines } = capturingContext();
      const response = await brokenHandler(jsonRequest(sendUrl, simpleMessage, alertsKey), context);
      expect(response.status).toBe(502);
      const error = (response.jsonBody as { error: { code: string; message: string; remedy: string } }).error;
      expect(error.code).toBe('client_secret_invalid');
      expect(error.message).toContain('AADSTS7000215');
      expect(error.remedy).toContain('RELAY_CLIENT_SECRET_NAME');
      expect(JSON.stringify(response.jsonBody) + lines.join('\n')).not.toContain('stale-secret-value');
      expect(broken.smtp.authAttempts).toHaveLength(0);
      expect(broken.smtp.messages).toHaveLength(0);
    } finally {
      await broken.close();
    }
  });

  it('says where to put the secret when none is stored', async () => {
    const empty = await startRelayHarness({ storeClientSecret: false });
    try {
      const emptyHandler = bindHttp(send, empty.runtime);
      const { context } = capturingContext();
      const response = await emptyHandler(jsonRequest(sendUrl, simpleMessage, alertsKey), context);
      expect(response.status).toBe(500);
      expect((response.jsonBody as { error: { code: string; remedy: string } }).error).toMatchObject({
        code: 'client_credential_missing',
        remedy: expect.stringContaining('relay-client-secret'),
      });
    } finally {
      await empty.close();
    }
  });

  it('refuses an untrusted SMTP certificate, and trusts it once given as RELAY_SMTP_EXTRA_CA', async () => {
    const inspectingProxyCertificate = await createTestCertificate({ commonName: 'inspecting-proxy' });
    const proxiedSmtp = await startSmtpPeer({ certificate: inspectingProxyCertificate });
    const untrusted = await startRelayHarness({ settings: { RELAY_SMTP_PORT: String(proxiedSmtp.port) } });
    const trusted = await startRelayHarness({
      settings: {
        RELAY_SMTP_PORT: String(proxiedSmtp.port),
        RELAY_SMTP_EXTRA_CA: inspectingProxyCertificate.cert,
      },
    });
    try {
      const { context } = capturingContext();
      const refused = await bindHttp(send, untrusted.runtime)(
        jsonRequest(sendUrl, simpleMessage, alertsKey),
        context,
      );
      expect(refused.status).toBe(502);
      expect((refused.jsonBody as { error: { code: string; remedy: string } }).error).toMatchObject({
        code: 'smtp_certificate_untrusted',
        remedy: expect.stringContaining('RELAY_SMTP_EXTRA_CA'),
      });
      expect(proxiedSmtp.messages).toHaveLength(0);
      const accepted = await bindHttp(send, trusted.runtime)(
        jsonRequest(sendUrl, simpleMessage, alertsKey),
        context,
      );
      expect(accepted.status).toBe(200);
      expect(await proxiedSmtp.waitForMessages(1)).toHaveLength(1);
    } finally {
      await Promise.all([untrusted.close(), trusted.close()]);
      await proxiedSmtp.close();
    }
  });
});

describe('secrets stay secret', () => {
  it('never puts the client secret, an access token or a caller key in logs or responses', () => {
    const everything = [...allLogLines, ...allResponseBodies].join('\n');
    expect(allResponseBodies.length).toBeGreaterThan(20);
    expect(everything).not.toContain(appClientSecret);
    expect(everything).not.toContain('caller-key-alerts-0123456789');
    for (const token of harness.identity.issuedAccessTokens.keys()) expect(everything).not.toContain(token);
  });
});
