import fc from 'fast-check';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RelayHttpHandler } from '../../functions/httpEdge.ts';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { parseSendRequest } from '../../shared/message.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Property: whatever body arrives, POST /api/send answers a 4xx JSON error or sends exactly the valid
 * message; never a 5xx, never a crash, never a message on the SMTP server that differs from the request.
 * Most generated bodies are hostile and refused before SMTP; the valid ones are checked at the server.
 */
const RUNS = 10_000;
const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };
const MAX_MESSAGE_BYTES = 200_000;

let harness: RelayHarness;
let handler: RelayHttpHandler;

beforeAll(async () => {
  harness = await startRelayHarness({ settings: { RELAY_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) } });
  handler = bindHttp(send, harness.runtime);
});

afterAll(async () => {
  await harness?.close();
});

const controlChar = fc.constantFrom(
  '\r',
  '\n',
  '\r\n',
  '\0',
  '\u0007',
  '\u001b',
  '\u007f',
  '\u2028',
  '\ud800',
);
/** A string with CR, LF, NUL or another control character spliced in somewhere. */
const poisoned = fc
  .tuple(fc.string({ maxLength: 20 }), controlChar, fc.string({ maxLength: 20 }))
  .map(([head, bad, tail]) => `${head}${bad}${tail}`);
const unicodeText = fc.string({ unit: 'binary', maxLength: 60 });
const huge = fc.integer({ min: 100_000, max: 400_000 }).map((length) => 'x'.repeat(length));
const address = fc.constantFrom(
  'ops@contoso.com',
  'lead@contoso.com',
  '"Ops, Team" <ops@contoso.com>',
  'a.b+c@sub.contoso.com',
);
const badAddress = fc.constantFrom(
  'nope',
  '@contoso.com',
  'a@b',
  'ops@contoso.com\r\nBcc: x@evil.com',
  'a@b@c.com',
  '<>',
  '',
);
const base64 = fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('base64'));
const bogusBase64 = fc.constantFrom('not base64!', 'QUJD=', '====', 'QUJDRA', '%%%%', 'QU JD\u0000');
const oversize = fc.constant(Buffer.alloc(MAX_MESSAGE_BYTES).toString('base64'));
const anyValue = fc.oneof(fc.anything(), fc.jsonValue(), fc.constant(null), fc.integer(), fc.boolean());

function field<T>(valid: fc.Arbitrary<T>, ...hostile: fc.Arbitrary<unknown>[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 3, arbitrary: valid as fc.Arbitrary<unknown> },
    ...hostile.map((arbitrary) => ({ weight: 1, arbitrary })),
  );
}

const attachment = fc.record(
  {
    filename: field(fc.constantFrom('a.txt', 'Bericht Grüße.pdf', '報告.bin'), poisoned, anyValue),
    content: field(base64, bogusBase64, oversize, anyValue),
    contentType: field(fc.constantFrom('text/plain', 'application/pdf'), poisoned, anyValue),
  },
  { requiredKeys: ['filename', 'content'] },
);

/** A message whose fields are each valid, hostile or of the wrong type. */
const mutatedMessage = fc.record(
  {
    from: field(
      fc.constantFrom('alerts@contoso.com', { address: 'alerts@contoso.com', name: 'Alerts' }),
      badAddress,
      poisoned,
      anyValue,
    ),
    to: field(
      fc.oneof(address, fc.array(address, { minLength: 1, maxLength: 3 })),
      badAddress,
      poisoned,
      anyValue,
    ),
    cc: field(address, badAddress, anyValue),
    subject: field(unicodeText, poisoned, huge, anyValue),
    text: field(unicodeText, poisoned, huge, anyValue),
    html: field(
      unicodeText.map((text) => `<p>${text}</p>`),
      poisoned,
      anyValue,
    ),
    attachments: field(fc.array(attachment, { maxLength: 2 }), anyValue),
    headers: field(
      fc.constant({ 'X-Case': 'fuzz' }),
      fc.record({ Received: fc.string() }),
      fc.record({ 'X-Bad': poisoned }),
      anyValue,
    ),
    priority: field(fc.constantFrom('high', 'normal', 'low'), anyValue),
  },
  { requiredKeys: [] },
);

/** A message valid by construction: unicode everywhere text may go. */
const validMessage = fc.record({
  from: fc.constant('alerts@contoso.com'),
  to: address,
  subject: unicodeText,
  text: unicodeText,
});

const body = fc.oneof(
  { weight: 2, arbitrary: fc.string({ maxLength: 200 }).map((text) => ({ raw: text })) },
  { weight: 2, arbitrary: anyValue.map((value) => ({ json: value })) },
  { weight: 12, arbitrary: mutatedMessage.map((value) => ({ json: value as unknown })) },
  { weight: 1, arbitrary: validMessage.map((value) => ({ json: value as unknown })) },
);

// Mail has one line break, CRLF (RFC 5322 2.3): a bare CR or LF in a body is sent as one, so compare lines.
const normalise = (text: string | undefined) => (text ?? '').replace(/\r\n?/g, '\n').replace(/\s+$/u, '');
const normaliseHeader = (text: string | undefined) => (text ?? '').replace(/\s+/gu, ' ').trim();

it(`answers ${RUNS} generated bodies with a 4xx or exactly the valid message, never a 5xx`, async () => {
  const statuses = new Map<number, number>();
  let sent = 0;
  await fc.assert(
    fc.asyncProperty(body, async (input) => {
      const text = 'raw' in input ? input.raw : (JSON.stringify(input.json) ?? 'null');
      const { context } = capturingContext();
      const response = await handler(jsonRequest(sendUrl, text, alertsKey), context);
      const status = response.status ?? 0;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      expect(status === 200 || (status >= 400 && status < 500), `status ${status}`).toBe(true);
      if (status !== 200) {
        expect((response.jsonBody as { error: { code: string } }).error.code).toMatch(/^[a-z_]+$/);
        return;
      }
      sent += 1;
      // Accepted: the server must hold exactly this message.
      const expected = parseSendRequest(JSON.parse(text), harness.config.limits);
      const { messageId } = response.jsonBody as { messageId: string };
      const received = harness.smtp.messages.filter((message) =>
        message.raw.includes(Buffer.from(messageId)),
      );
      expect(received).toHaveLength(1);
      const [copy] = received;
      const mail = await simpleParser(copy?.raw ?? Buffer.alloc(0));
      expect(normaliseHeader(mail.subject)).toBe(normaliseHeader(expected.subject));
      // With an empty text part, mailparser derives text from the html; compare what was actually sent.
      if ((expected.text ?? '') !== '') expect(normalise(mail.text)).toBe(normalise(expected.text));
      if ((expected.html ?? '') !== '') expect(normalise(mail.html || '')).toBe(normalise(expected.html));
      // The envelope names each recipient once, however often the request repeats it.
      expect(copy?.envelopeTo.sort()).toEqual(
        [...new Set([...expected.to, ...expected.cc, ...expected.bcc].map((entry) => entry.address))].sort(),
      );
      expect(mail.attachments.map((file) => file.content.toString('base64'))).toEqual(
        expected.attachments.map((file) => file.content.toString('base64')),
      );
    }),
    { numRuns: RUNS, seed: 20261123, endOnFailure: true },
  );
  expect(sent).toBeGreaterThan(100);
  process.stdout.write(
    `\nfuzzed ${RUNS} bodies: ${JSON.stringify(Object.fromEntries(statuses))}; ${sent} sent and verified\n`,
  );
}, 240_000);
