import { RelayError } from '../errors.ts';

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
  if (Number(request.headers.get('content-length') ?? '0') > maxBytes) throw bodyTooLarge(maxBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) throw bodyTooLarge(maxBytes);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const utf8 = new TextDecoder();

/** Reads a JSON body, refusing other content types, bodies over `maxBytes`, and malformed JSON with a 4xx. */
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
  // Counted as it arrives, so a chunked body over the limit is refused before it is held whole; decoded as
  // request.text() would (UTF-8, a byte order mark dropped).
  const text = utf8.decode(await readBodyBytes(request, maxBytes));
  if (text.trim() === '') {
    if ('emptyAs' in options) return options.emptyAs;
    throw new RelayError('invalid_json', {
      message: 'The request body is empty; send a JSON object.',
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new RelayError('invalid_json', {
      message: `The request body is not valid JSON: ${error instanceof Error ? error.message.slice(0, 200) : 'parse error'}.`,
    });
  }
}

function bodyTooLarge(maxBytes: number): RelayError {
  return new RelayError('request_too_large', {
    message: `The request body is larger than ${maxBytes} bytes.`,
  });
}
