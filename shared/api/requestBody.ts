import { randomUUID } from 'node:crypto';
import { TextDecoder } from 'node:util';
import { RelayError } from '../errors.ts';
import { createJsonGuard, defaultJsonBounds, invalidJsonAt } from './jsonGuard.ts';

/**
 * Request bodies as the HTTP functions read them: bounded before they are held, refused with a 4xx that
 * says what is wrong, never echoed whole.
 */

/** The parts of an HTTP request its body is read from (an @azure/functions HttpRequest is one). */
export interface BodyStreamSource {
  readonly headers: { get(name: string): string | null };
  readonly body: AsyncIterable<Uint8Array> | null;
}

/**
 * The body's bytes, refused before they are held whole when there are more than `maxBytes`: by the
 * Content-Length it declares, else by counting as they arrive (a chunked body declares none).
 */
export async function readBodyBytes(request: BodyStreamSource, maxBytes: number): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of boundedBody(request, maxBytes)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function* boundedBody(request: BodyStreamSource, maxBytes: number): AsyncIterable<Uint8Array> {
  if (Number(request.headers.get('content-length') ?? '0') > maxBytes) throw bodyTooLarge(maxBytes);
  let size = 0;
  for await (const chunk of request.body ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) throw bodyTooLarge(maxBytes);
    yield chunk;
  }
}

/**
 * The largest JSON body that can carry a message of `maxMessageBytes` encoded. An attachment travels as
 * base64 in both (4/3 of its bytes), and the encoded message also breaks base64 into 76-character lines,
 * so the JSON form of an attachment is ~2.6% smaller than its encoded form. Text and html go out as
 * quoted-printable or base64, never smaller than their UTF-8, which is what JSON.stringify writes; a
 * serializer that escapes every non-ASCII character (`\u00e9`: Python's json.dumps by default) writes text
 * 1.5 to 2.25 times its encoded size, so such a body carries proportionally less text, which is rarely the
 * bulk of a message. The 1 MiB allows for the JSON's own keys and punctuation and for a compatible API's
 * request that shares one message among many recipients (SendGrid's 1,000 personalizations).
 */
export function jsonBodyLimit(maxMessageBytes: number): number {
  return maxMessageBytes + 1_048_576;
}

/** Lets timers and other requests run between the steps of a large body's synchronous work. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
/**
 * A body this small parses in well under a millisecond, so its steps run without yielding: a yield puts the
 * request behind every pending I/O callback while it holds one of the decoding slots (shared/durable/
 * submitSend.ts), which at 50 concurrent 10 KB sends halved the throughput.
 */
const yieldAboveBytes = 1024 * 1024;

/**
 * Reads a JSON body, refusing other content types, bodies over `maxBytes`, bodies nested too deep or
 * holding too many values (jsonGuard.ts, checked as the chunks arrive), and malformed JSON with a 4xx.
 */
export async function readJsonBody(
  request: BodyStreamSource,
  maxBytes: number,
  options: { emptyAs?: unknown } = {},
): Promise<unknown> {
  const contentType = request.headers.get('content-type');
  if (contentType !== null && !/^application\/(?:[\w.+-]+\+)?json\b/i.test(contentType)) {
    throw new RelayError('unsupported_media_type', {
      message: `The body must be JSON (Content-Type: application/json), not ${contentType.slice(0, 100)}.`,
    });
  }
  const guard = createJsonGuard(defaultJsonBounds, longStringBytes, longStringSliceBytes);
  const chunks: Buffer[] = [];
  for await (const chunk of boundedBody(request, maxBytes)) {
    guard.scan(chunk);
    chunks.push(
      Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
  }
  if (!guard.finish()) {
    if ('emptyAs' in options) return options.emptyAs;
    throw new RelayError('invalid_json', {
      message: 'The request body is empty; send a JSON object.',
    });
  }
  const body = new ChunkedBytes(chunks);
  // Long strings without escapes (base64 attachments, long address lists, big bodies) are decoded straight
  // from their bytes and put back into the parsed skeleton, so JSON.parse never copies them: two copies of
  // the body at most (its bytes and its strings) instead of four, and no single JSON.parse pass over tens of
  // megabytes. Each step yields to the event loop, so none holds it for long. The placeholder is one no
  // caller can write by chance: an escaped NUL and a random id, new for each request.
  const placeholderId = randomUUID();
  const longStrings = new Map<string, string>();
  const skeleton: string[] = [];
  // Where each placeholder ends in the skeleton, and how many characters shorter it is than its string:
  // JSON.parse's positions in the skeleton are turned back into positions in the body.
  const shortenings: { endsAt: number; shorterBy: number }[] = [];
  let skeletonLength = 0;
  let from = 0;
  for (const [index, range] of guard.longStrings.entries()) {
    const between = body.text(from, range.start);
    const placeholder = `\\u0000${placeholderId}:${index}`;
    skeleton.push(between, placeholder);
    skeletonLength += between.length + placeholder.length;
    // Decoded a few megabytes at a time, yielding between pieces. A piece without escapes is its text, once
    // checked for the raw control characters JSON.parse would have refused; one with escapes is cut where
    // the guard allows (never inside an escape) and parsed on its own.
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    const slices: string[] = [];
    let decodedLength = 0;
    const ends = range.escaped ? [...range.cuts, range.end] : evenCuts(range.start, range.end);
    let sliceStart = range.start;
    for (const sliceEnd of ends) {
      await yieldToEventLoop();
      const slice = body.text(sliceStart, sliceEnd, decoder);
      const refusal = (problem: string, index: number) =>
        stringRefusalAt(problem, skeleton.join(''), sliceStart + index, decodedLength + index);
      if (range.escaped) {
        try {
          slices.push(JSON.parse(`"${slice}"`) as string);
        } catch (error) {
          const position = /at position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
          throw refusal(
            'a malformed escape or control character in a string',
            Math.max(0, Number(position ?? 1) - 1),
          );
        }
      } else {
        const control = rawControlCharacter.exec(slice);
        if (control !== null) throw refusal('a control character inside a string', control.index);
        slices.push(slice);
      }
      decodedLength += slice.length;
      sliceStart = sliceEnd;
    }
    // A string ends at its closing quote, so no character is left half decoded.
    decoder.decode();
    longStrings.set(`\u0000${placeholderId}:${index}`, slices.join(''));
    shortenings.push({ endsAt: skeletonLength, shorterBy: range.end - range.start - placeholder.length });
    from = range.end;
  }
  skeleton.push(body.text(from, body.length));
  chunks.length = 0;
  const text = skeleton.join('');
  const large = body.length >= yieldAboveBytes;
  if (large) await yieldToEventLoop();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw parseRefusal(text, error, shortenings);
  }
  if (longStrings.size > 0) {
    if (large) await yieldToEventLoop();
    parsed = restoreLongStrings(parsed, longStrings);
  }
  if (large) await yieldToEventLoop();
  return parsed;
}

/** String values at least this long (base64 attachments, big bodies) skip JSON.parse (readJsonBody). */
const longStringBytes = 16_384;
const longStringSliceBytes = 4 * 1024 * 1024;

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const rawControlCharacter = /[\u0000-\u001f]/;

/** The ends of the pieces an escape-free string is decoded in, about longStringSliceBytes each. */
function evenCuts(start: number, end: number): number[] {
  const ends: number[] = [];
  for (let at = start + longStringSliceBytes; at < end; at += longStringSliceBytes) ends.push(at);
  ends.push(end);
  return ends;
}

/** The refusal JSON.parse would have given, for a long string it did not see (`before`: the text up to it). */
function stringRefusalAt(
  problem: string,
  before: string,
  position: number,
  indexInString: number,
): RelayError {
  const withoutPlaceholder = before.slice(0, before.lastIndexOf('"') + 1);
  let line = 1;
  for (
    let index = withoutPlaceholder.indexOf('\n');
    index !== -1;
    index = withoutPlaceholder.indexOf('\n', index + 1)
  )
    line += 1;
  const column = withoutPlaceholder.length - (withoutPlaceholder.lastIndexOf('\n') + 1) + indexInString + 1;
  return invalidJsonAt(problem, position, line, column);
}

/** Puts each long string back where its placeholder stands in the parsed skeleton. */
function restoreLongStrings(value: unknown, longStrings: ReadonlyMap<string, string>): unknown {
  if (typeof value === 'string') return longStrings.get(value) ?? value;
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++)
      value[index] = restoreLongStrings(value[index], longStrings);
    return value;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) record[key] = restoreLongStrings(record[key], longStrings);
  return record;
}

/** A body's chunks as one range of bytes, decoded as request.text() would (UTF-8, a byte order mark dropped). */
class ChunkedBytes {
  readonly length: number;
  private readonly chunks: readonly Buffer[];
  private readonly starts: number[] = [];

  constructor(chunks: readonly Buffer[]) {
    this.chunks = chunks;
    let length = 0;
    for (const chunk of chunks) {
      this.starts.push(length);
      length += chunk.length;
    }
    this.length = length;
  }

  /**
   * The text of the bytes from `start` to `end`. With a `decoder` of the caller's, decoding continues where
   * it left off (a character split across two calls is kept whole) and is not flushed.
   */
  text(start: number, end: number, decoder?: TextDecoder): string {
    const streaming = decoder ?? new TextDecoder('utf-8', { ignoreBOM: start !== 0 });
    const pieces: string[] = [];
    for (const [index, chunk] of this.chunks.entries()) {
      const chunkStart = this.starts[index] as number;
      if (chunkStart + chunk.length <= start) continue;
      if (chunkStart >= end) break;
      const part = chunk.subarray(Math.max(0, start - chunkStart), Math.min(chunk.length, end - chunkStart));
      pieces.push(streaming.decode(part, { stream: true }));
    }
    if (decoder === undefined) pieces.push(streaming.decode());
    return pieces.join('');
  }
}

/**
 * What JSON.parse refused, by position only: V8's messages quote the text around the fault
 * (`Unexpected token 'x', "…" is not valid JSON`), and a body is never echoed into answers or logs.
 */
function parseRefusal(
  text: string,
  error: unknown,
  shortenings: readonly { endsAt: number; shorterBy: number }[],
): RelayError {
  const position = /at position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
  if (position === undefined) {
    return new RelayError('invalid_json', { message: 'The request body is not valid JSON.' });
  }
  const at = Number(position);
  // JSON.parse counts characters of the skeleton; the guard's positions are bytes of the body.
  const bodyByte = (index: number) =>
    Buffer.byteLength(text.slice(0, index)) +
    shortenings.reduce((sum, shortening) => sum + (shortening.endsAt <= index ? shortening.shorterBy : 0), 0);
  let line = 1;
  for (let index = text.indexOf('\n'); index !== -1 && index < at; index = text.indexOf('\n', index + 1))
    line += 1;
  const lineStart = text.lastIndexOf('\n', at - 1) + 1;
  return invalidJsonAt(
    'a malformed string or number',
    bodyByte(at),
    line,
    bodyByte(at) - bodyByte(lineStart) + 1,
  );
}

function bodyTooLarge(maxBytes: number): RelayError {
  return new RelayError('request_too_large', {
    message: `The request body is larger than ${maxBytes} bytes.`,
  });
}
