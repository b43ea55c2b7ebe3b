import { describe, expect, it } from 'vitest';
import { RelayError } from '../../shared/errors.ts';
import { parseSendRequest } from '../../shared/message.ts';

const limits = { maxMessageBytes: 35 * 1024 * 1024, maxRecipients: 500 };

function refusal(body: unknown, customLimits = limits): RelayError {
  try {
    parseSendRequest(body, customLimits);
  } catch (error) {
    if (error instanceof RelayError) return error;
    throw error;
  }
  throw new Error('the request was accepted');
}

function fieldsOf(error: RelayError): string[] {
  return (error.details as { field: string }[]).map((problem) => problem.field);
}

const minimal = {
  from: 'alerts@contoso.com',
  to: 'ops@contoso.com',
  subject: 'Disk full',
  text: 'sda1 at 97%',
};

describe('send request parsing', () => {
  it('accepts every address form a caller may use', () => {
    const request = parseSendRequest(
      {
        ...minimal,
        from: { address: 'alerts@contoso.com', name: 'Alerts' },
        to: ['"Ops, Night" <ops@contoso.com>', { address: 'dev@contoso.com' }],
        cc: 'a@contoso.com, B <b@contoso.com>',
        replyTo: { address: 'noreply@contoso.com', name: 'No Reply' },
      },
      limits,
    );
    expect(request.from).toEqual({ name: 'Alerts', address: 'alerts@contoso.com' });
    expect(request.to).toEqual([
      { name: 'Ops, Night', address: 'ops@contoso.com' },
      { name: '', address: 'dev@contoso.com' },
    ]);
    expect(request.cc.map((entry) => entry.address)).toEqual(['a@contoso.com', 'b@contoso.com']);
  });

  it('takes an X- header however its name is cased, since header names are case-insensitive', () => {
    const request = parseSendRequest(
      {
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        subject: 's',
        text: 't',
        headers: { 'x-entity-ref-id': 'r-1' },
      },
      limits,
    );
    expect(request.headers).toEqual({ 'x-entity-ref-id': 'r-1' });
  });

  it('names each invalid field by its JSON path', () => {
    const error = refusal({
      from: 'not-an-address',
      to: ['ok@contoso.com', { address: 'broken' }],
      subject: 42,
      attachments: [{ filename: 'a.txt', content: '!!notbase64' }],
      headers: { Subject: 'override' },
      priority: 'urgent',
      colour: 'red',
    });
    expect(error.status).toBe(400);
    expect(error.code).toBe('invalid_request');
    expect(fieldsOf(error)).toEqual(
      expect.arrayContaining([
        'from',
        'to[1].address',
        'subject',
        'attachments[0].content',
        'headers.Subject',
        'priority',
        '(body)',
      ]),
    );
  });

  it.each([
    ['subject', { subject: 'Hi\r\nBcc: victim@example.com' }, 'subject'],
    ['a display name', { to: { address: 'ops@contoso.com', name: 'Ops\nBcc: x@example.com' } }, 'to.name'],
    ['an address string', { to: 'ops@contoso.com\r\nBcc: x@example.com' }, 'to'],
    ['a header value', { headers: { 'X-Ticket': '1\r\nBcc: x@example.com' } }, 'headers.X-Ticket'],
    [
      'an attachment name',
      { attachments: [{ filename: 'a\r\n.txt', content: 'aGk=' }] },
      'attachments[0].filename',
    ],
    ['the from name', { from: { address: 'alerts@contoso.com', name: 'A\u0000' } }, 'from.name'],
  ])('refuses CR, LF or NUL in %s', (_label, override, field) => {
    const error = refusal({ ...minimal, ...override });
    expect(error.status).toBe(400);
    expect(fieldsOf(error).join(' ')).toContain(field);
  });

  it('requires a recipient and some content', () => {
    const error = refusal({ from: 'alerts@contoso.com', subject: 'x' });
    expect(fieldsOf(error)).toEqual(expect.arrayContaining(['to', 'text']));
  });

  it('refuses more recipients than the limit with 413', () => {
    const to = Array.from({ length: 6 }, (_, index) => `user${index}@contoso.com`);
    const error = refusal({ ...minimal, to }, { ...limits, maxRecipients: 5 });
    expect(error.status).toBe(413);
    expect(error.code).toBe('too_many_recipients');
  });

  it('refuses a message larger than the limit with 413', () => {
    const content = Buffer.alloc(200_000, 1).toString('base64');
    const error = refusal(
      { ...minimal, attachments: [{ filename: 'big.bin', content }] },
      { ...limits, maxMessageBytes: 100_000 },
    );
    expect(error.status).toBe(413);
    expect(error.code).toBe('message_too_large');
  });

  it('decodes attachments, tolerating wrapped base64', () => {
    const request = parseSendRequest(
      {
        ...minimal,
        attachments: [{ filename: 'r.txt', contentType: 'text/plain', content: 'aGVs\r\nbG8=' }],
      },
      limits,
    );
    expect(request.attachments[0]?.content.toString()).toBe('hello');
  });

  it('refuses attachment content with a character outside base64 or padding inside it', () => {
    for (const content of ['aGVs$G8=', 'aG==bG8=', 'aGVsbG8']) {
      const error = refusal({ ...minimal, attachments: [{ filename: 'r.txt', content }] });
      expect(error.code).toBe('invalid_request');
      expect(fieldsOf(error)).toEqual(['attachments[0].content']);
    }
  });

  it.each([
    ['a long subject', { subject: 'é'.repeat(9000) }],
    [
      'long display names',
      {
        to: Array.from({ length: 40 }, (_, index) => ({
          address: `u${index}@contoso.com`,
          name: 'ü'.repeat(200),
        })),
      },
    ],
    [
      'X- headers',
      {
        headers: Object.fromEntries(
          Array.from({ length: 20 }, (_, index) => [`X-Note-${index}`, 'ß'.repeat(1000)]),
        ),
      },
    ],
  ])('counts %s in the encoded size it refuses with 413', (_label, override) => {
    const error = refusal({ ...minimal, ...override }, { ...limits, maxMessageBytes: 60_000 });
    expect(error.status).toBe(413);
    expect(error.code).toBe('message_too_large');
  });

  it('refuses X- headers over 64 KiB together, naming headers', () => {
    const headers = Object.fromEntries(
      Array.from({ length: 40 }, (_, index) => [`X-Note-${index}`, `${'n '.repeat(999)}n`]),
    );
    const error = refusal({ ...minimal, headers });
    expect(error.code).toBe('invalid_request');
    expect(fieldsOf(error)).toEqual(['headers']);
  });

  it('refuses recipients past the limit counted across to, cc and bcc, before expanding the rest', () => {
    const crowded = Array.from({ length: 300 }, (_, index) => `u${index}@contoso.com`).join(', ');
    const error = refusal({ ...minimal, to: crowded, cc: [crowded], bcc: crowded });
    expect(error.code).toBe('too_many_recipients');
    expect(error.message).toContain('more than 500');
  });

  it('refuses 900 address strings of 20,000 characters as too many recipients', () => {
    const crowded = Array.from({ length: 2500 }, (_, index) => `u${index}@x.io`)
      .join(',')
      .slice(0, 20_000);
    const error = refusal({ ...minimal, to: Array.from({ length: 900 }, () => crowded) });
    expect(error.code).toBe('too_many_recipients');
  });

  it('holds Reply-To to the recipient limit', () => {
    const crowded = Array.from({ length: 501 }, (_, index) => `u${index}@contoso.com`).join(', ');
    const error = refusal({ ...minimal, replyTo: crowded });
    expect(fieldsOf(error)).toEqual(['replyTo']);
  });
});
