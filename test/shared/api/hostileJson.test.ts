import { describe, expect, it } from 'vitest';
import { defaultJsonBounds } from '../../../shared/api/jsonGuard.ts';
import { jsonBodyLimit, readJsonBody } from '../../../shared/api/requestBody.ts';
import { RelayError } from '../../../shared/errors.ts';
import { parseSendRequest } from '../../../shared/message.ts';

const limits = { maxMessageBytes: 35 * 1024 * 1024, maxRecipients: 500 };
const maxBodyBytes = jsonBodyLimit(limits.maxMessageBytes);
const chunkBytes = 65_536;

/** A request whose body arrives in 64 KiB chunks, as from a socket, counting the bytes it handed out. */
function chunkedRequest(body: Buffer) {
  const handedOut = { bytes: 0 };
  async function* chunks() {
    for (let offset = 0; offset < body.length; offset += chunkBytes) {
      const chunk = body.subarray(offset, offset + chunkBytes);
      handedOut.bytes += chunk.length;
      yield chunk;
    }
  }
  const headers = new Headers({ 'content-type': 'application/json' });
  return { request: { headers, body: chunks() }, handedOut };
}

async function refusalOf(body: Buffer): Promise<{ error: RelayError; handedOut: number }> {
  const { request, handedOut } = chunkedRequest(body);
  try {
    parseSendRequest(await readJsonBody(request, maxBodyBytes), limits);
  } catch (error) {
    if (error instanceof RelayError) return { error, handedOut: handedOut.bytes };
    throw error;
  }
  throw new Error('the body was accepted');
}

/** A body of exactly the limit: `open`, then `unit` repeated, then as much of `close` as fits. */
function maxSizeBody(open: string, unit: string, close: string): Buffer {
  const repeats = Math.floor((maxBodyBytes - open.length - close.length) / unit.length);
  return Buffer.from(open + unit.repeat(repeats) + close);
}

describe('hostile JSON bodies are refused before they are read whole', () => {
  it.each([
    ['nested arrays', maxSizeBody('', '[', ''), `deeper than ${defaultJsonBounds.maxDepth} levels`],
    ['nested objects', maxSizeBody('', '{"a":', ''), `deeper than ${defaultJsonBounds.maxDepth} levels`],
    ['tiny values', maxSizeBody('[', '1,', '1]'), `more than ${defaultJsonBounds.maxValues} values`],
    [
      'tiny keys',
      maxSizeBody('{"headers":{', '"X":0,', '"Y":0}}'),
      `more than ${defaultJsonBounds.maxValues} values`,
    ],
  ])(
    'refuses a max-size body of %s with 400 request_too_complex naming the bound',
    async (_label, body, bound) => {
      expect(body.length).toBeGreaterThan(maxBodyBytes - 10);
      const { error, handedOut } = await refusalOf(body);
      expect(error.status).toBe(400);
      expect(error.code).toBe('request_too_complex');
      expect(error.message).toContain(bound);
      expect(handedOut).toBeLessThan(body.length / 4);
    },
  );

  it('refuses a syntax error as soon as it arrives, saying where without quoting the body', async () => {
    const body = Buffer.from(`{"subject": "secret-plans" "text": "${'x'.repeat(5_000_000)}"}`);
    const { error, handedOut } = await refusalOf(body);
    expect(error.code).toBe('invalid_json');
    expect(error.message).toMatch(/at byte 27 \(line 1, column 28\)/);
    expect(error.message).not.toContain('secret');
    expect(handedOut).toBe(chunkBytes);
  });

  it.each([
    ['a bad escape', '{"subject": "secret-plans\\q"}'],
    ['a control character in a string', '{"subject": "secret-plans\u0001"}'],
    ['a malformed number', '{"count": 1.2.3, "subject": "secret-plans"}'],
    ['a misspelt literal', '{"secret-plans": nulx}'],
  ])('answers %s (found by JSON.parse) without quoting the body', async (_label, text) => {
    const { error } = await refusalOf(Buffer.from(text));
    expect(error.code).toBe('invalid_json');
    expect(error.message).not.toMatch(/secret|plans|lans|subject|count|"/);
  });

  it('refuses a body over the limit by counting, before reading the rest', async () => {
    const body = Buffer.alloc(maxBodyBytes * 2, 0x20);
    const { error, handedOut } = await refusalOf(body);
    expect(error.code).toBe('request_too_large');
    expect(handedOut).toBeLessThanOrEqual(maxBodyBytes + chunkBytes);
  });

  it('refuses 900 address strings of 20,000 characters as too many recipients', async () => {
    const crowded = Array.from({ length: 4000 }, (_, index) => `u${index}@x.io`)
      .join(',')
      .slice(0, 20_000)
      .replace(/,[^,]*$/, '');
    const body = Buffer.from(
      JSON.stringify({ from: 'a@contoso.com', subject: 's', text: 't', to: Array(900).fill(crowded) }),
    );
    const { error } = await refusalOf(body);
    expect(error.status).toBe(413);
    expect(error.code).toBe('too_many_recipients');
  });
});

describe('legitimate JSON bodies still parse', () => {
  it('accepts a 25 MB attachment arriving in 64 KiB chunks, bytes intact', async () => {
    const content = Buffer.alloc(25 * 1024 * 1024);
    for (let index = 0; index < content.length; index += 4096) content[index] = index % 251;
    const body = Buffer.from(
      JSON.stringify({
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        subject: 'Nightly export',
        text: 'Attached.',
        attachments: [{ filename: 'export.bin', content: content.toString('base64') }],
      }),
    );
    expect(body.length).toBeLessThan(maxBodyBytes);
    const { request } = chunkedRequest(body);
    const parsed = parseSendRequest(await readJsonBody(request, maxBodyBytes), limits);
    expect(parsed.attachments[0]?.content.equals(content)).toBe(true);
  });

  it('accepts text full of escapes up to the limit', async () => {
    const text = 'é\n"\\'.repeat(Math.floor(maxBodyBytes / 40));
    const body = Buffer.from(
      JSON.stringify({ from: 'a@contoso.com', to: 'b@contoso.com', subject: 's', text }),
    );
    const { request } = chunkedRequest(body);
    expect(parseSendRequest(await readJsonBody(request, maxBodyBytes), limits).text).toBe(text);
  });

  it('joins a long escaped string cut into pieces, surrogate pairs split between pieces included', async () => {
    // As Python's json.dumps writes non-ASCII text: every character escaped, 😀 as a surrogate pair.
    const repeats = 800_000;
    // The 12 letters in front put the guard's cuts (every 4 MiB, at an escape) inside surrogate pairs.
    const escaped = `${'a'.repeat(12)}${'\\ud83d\\ude00\\u00e9a'.repeat(repeats)}`;
    const body = Buffer.from(
      `{"from":"a@contoso.com","to":"b@contoso.com","subject":"s","text":"${escaped}"}`,
    );
    expect(body.length).toBeGreaterThan(3 * 4 * 1024 * 1024);
    const { request } = chunkedRequest(body);
    const parsed = parseSendRequest(await readJsonBody(request, maxBodyBytes), limits);
    expect(parsed.text).toBe(`${'a'.repeat(12)}${'😀éa'.repeat(repeats)}`);
  });

  it('keeps a chunk boundary inside an escape or a literal from changing the result', async () => {
    const value = { a: ['x\\"y', true, null, -1.5e3, { b: '\u00e9\ud83d\ude00' }], c: false };
    const text = JSON.stringify(value);
    for (let split = 1; split < text.length; split++) {
      const bytes = Buffer.from(text);
      async function* twoChunks() {
        yield bytes.subarray(0, split);
        yield bytes.subarray(split);
      }
      const request = { headers: new Headers(), body: twoChunks() };
      expect(await readJsonBody(request, 1000)).toEqual(value);
    }
  });

  it('gives back long strings byte for byte wherever they stand, multi-byte characters split across chunks', async () => {
    const long = (seed: string) => `${seed}${'ä€😀x'.repeat(40_000)}${seed}`;
    const value = {
      a: [long('1'), { b: long('2'), short: 'é' }],
      ['k'.repeat(1000)]: 'a long key, a short value',
      c: `\u0000${'0'.repeat(36)}:0`,
      d: `${long('3')}\n`,
    };
    const { request } = chunkedRequest(
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(value))]),
    );
    expect(await readJsonBody(request, maxBodyBytes)).toEqual(value);
  });

  it('places a JSON.parse refusal after a long string where it is in the body', async () => {
    const body = Buffer.from(`{"a": "${'x'.repeat(100_000)}", "b": "bad \\q escape"}`);
    const { error } = await refusalOf(body);
    expect(error.code).toBe('invalid_json');
    expect(error.message).toMatch(/at byte 100021 \(line 1, column 100022\)/);
  });

  it('refuses a raw control character inside a long string, without quoting it', async () => {
    const body = Buffer.from(`{"text": "secret-${'x'.repeat(100_000)}\u0001${'y'.repeat(1000)}"}`);
    const { error } = await refusalOf(body);
    expect(error.code).toBe('invalid_json');
    expect(error.message).toMatch(/control character .* at byte 100017 \(line 1, column 100018\)/);
    expect(error.message).not.toContain('secret');
  });

  it('takes an empty body as the caller says', async () => {
    async function* blank() {
      yield Buffer.from('  \n ');
    }
    expect(await readJsonBody({ headers: new Headers(), body: blank() }, 100, { emptyAs: {} })).toEqual({});
  });
});
