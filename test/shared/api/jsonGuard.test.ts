import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createJsonGuard, defaultJsonBounds } from '../../../shared/api/jsonGuard.ts';
import { RelayError } from '../../../shared/errors.ts';

/** Feeds `text` to a fresh guard in chunks cut at `cuts`; the refusal it threw, or whether it saw a value. */
function scanInChunks(text: string, cuts: readonly number[] = []): RelayError | boolean {
  const bytes = Buffer.from(text);
  const guard = createJsonGuard();
  const ends = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  try {
    let start = 0;
    for (const end of [...ends, bytes.length]) {
      guard.scan(bytes.subarray(start, end));
      start = end;
    }
    return guard.finish();
  } catch (error) {
    if (error instanceof RelayError) return error;
    throw error;
  }
}

function refusalOf(text: string): RelayError {
  const outcome = scanInChunks(text);
  if (!(outcome instanceof RelayError)) throw new Error(`the guard passed ${text.slice(0, 40)}`);
  return outcome;
}

describe('the JSON guard', () => {
  it('passes every JSON text JSON.stringify writes, however the body is cut into chunks', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.array(fc.nat()), fc.boolean(), (value, cuts, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        expect(scanInChunks(text, cuts)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses structural errors as invalid_json, naming only the position', () => {
    const secret = 'Quarterly results: confidential';
    for (const text of [
      `{"text": "${secret}",}`,
      `{"text" "${secret}"}`,
      `["${secret}"]]`,
      `{"text": "${secret}"} trailing`,
      `{"text": "${secret}"`,
    ]) {
      const refusal = refusalOf(text);
      expect(refusal.code).toBe('invalid_json');
      expect(refusal.message).toMatch(/line \d+, column \d+/);
      expect(refusal.message).not.toContain('Quarterly');
      expect(refusal.message).not.toContain('confidential');
    }
  });

  it('treats a body of only whitespace as empty, for callers that default it', () => {
    expect(scanInChunks(' \r\n\t')).toBe(false);
  });

  it('refuses nesting deeper than its bound with request_too_complex naming the bound', () => {
    const depth = defaultJsonBounds.maxDepth;
    expect(scanInChunks(`${'['.repeat(depth)}${']'.repeat(depth)}`)).toBe(true);
    const refusal = refusalOf(`${'['.repeat(depth + 1)}${']'.repeat(depth + 1)}`);
    expect(refusal.code).toBe('request_too_complex');
    expect(refusal.message).toContain(`${depth} levels`);
  });

  it('refuses more values than its bound, counting object keys', () => {
    const max = defaultJsonBounds.maxValues;
    expect(scanInChunks(`[${'0,'.repeat(max - 2)}0]`)).toBe(true);
    const refusal = refusalOf(`[${'0,'.repeat(max - 1)}0]`);
    expect(refusal.code).toBe('request_too_complex');
    expect(refusal.message).toContain(`${max} values`);
    expect(refusalOf(`{${'"k":0,'.repeat(max / 2)}"k":0}`).code).toBe('request_too_complex');
  });

  it('refuses an object key longer than its bound, even split over chunks and written with escapes', () => {
    const max = defaultJsonBounds.maxKeyBytes;
    expect(scanInChunks(`{"${'k'.repeat(max)}":1}`, [7, 300])).toBe(true);
    expect(scanInChunks(`{"${'k'.repeat(max + 1)}":1}`, [7, 300])).toMatchObject({
      code: 'request_too_complex',
    });
    expect(scanInChunks(`{"${'\\n'.repeat(max / 2 + 1)}":1}`, [8])).toMatchObject({
      code: 'request_too_complex',
    });
    // String values have no such bound: an attachment's base64 is most of a body.
    expect(scanInChunks(`{"content":"${'A'.repeat(4 * max)}"}`, [100])).toBe(true);
  });

  it('refuses a number longer than any field needs, which JSON.parse would spend tens of ms on', () => {
    expect(scanInChunks(`{"n":-1.7976931348623157e+308}`)).toBe(true);
    expect(scanInChunks(`{"n":${'9'.repeat(101)}}`, [9])).toMatchObject({ code: 'request_too_complex' });
  });

  it('keeps escaped quotes and backslashes inside their string, wherever a chunk ends', () => {
    const text = JSON.stringify({ text: 'say "\\" and \\\\"', list: ['"', '\\'] });
    for (let cut = 0; cut <= text.length; cut += 1) expect(scanInChunks(text, [cut])).toBe(true);
  });
});
