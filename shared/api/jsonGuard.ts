import { RelayError } from '../errors.ts';

/**
 * A JSON body checked while it arrives, before JSON.parse holds any of it: JSON.parse and the schema after it
 * run in one uninterrupted block per request, so a body of millions of tiny values or thousands of nested
 * arrays (each well inside the byte limit) froze the worker for seconds. The guard sees each chunk once, as
 * it arrives, so its own work is spread over the body's arrival, and refuses as soon as it sees a syntax
 * error or a bound crossed: the rest of such a body is never read. Strings (legitimate bodies are mostly one
 * long base64 string) are skipped with Buffer.indexOf at native speed; only the structure between them is
 * walked byte by byte. JSON.parse stays the judge of what it accepts: the guard only has to refuse early
 * what JSON.parse would refuse anyway, and what no request needs.
 */
export interface JsonBounds {
  /** Containers open at once. */
  maxDepth: number;
  /** Values in the whole body, object keys included. */
  maxValues: number;
  /** UTF-8 bytes of one object key, as written (escapes included). */
  maxKeyBytes: number;
}

/**
 * What the send request and the compatible APIs (shared/compatible/*) legitimately need, with room to spare:
 * - depth: the deepest documented shape is Resend's `{attachments:[{content:{type,data:[…]}}]}` (4 levels
 *   under the body) and SendGrid's `{personalizations:[{to:[{email}]}]}`; 32 leaves room for any field a
 *   future schema adds while keeping JSON.parse's and zod's recursion trivially bounded.
 * - values: SendGrid allows 1000 personalizations of a dozen values each, the send request 500 recipients
 *   as objects (3 values each) and 100 attachments, Postmark a Headers array; all in the tens of thousands.
 *   Resend's byte-list attachments (a number per byte, as its Go SDK and Python users write them) are the
 *   only shape that needs more: 1,000,000 values keeps a 1 MB attachment in that form working while
 *   JSON.parse of the largest body allowed costs ~10 ms (1 M values; 17 M tiny values in a 35 MB body cost
 *   1.1 s). Larger files in that form are refused; base64 strings, which every one of these APIs accepts,
 *   have no such bound.
 * - key bytes: the longest legitimate key is an X- header name (78 characters) or a SendGrid custom_args /
 *   Postmark Metadata key; 1 KiB is plenty and keeps V8 from hashing megabyte keys.
 */
export const defaultJsonBounds: JsonBounds = { maxDepth: 32, maxValues: 1_000_000, maxKeyBytes: 1024 };

// Where the scanner is between bytes (plain numbers: Node runs this file with types stripped, no enums).
const Expect = {
  /** A value: at the top, after `:` or after `,` in an array. */
  Value: 0,
  /** A value or `]`: just after `[`. */
  ValueOrClose: 1,
  /** A key or `}`: just after `{`. */
  KeyOrClose: 2,
  /** A key: after `,` in an object. */
  Key: 3,
  Colon: 4,
  /** `,` or the close of the open container (or, at the top, only whitespace). */
  CommaOrClose: 5,
  InString: 6,
  /** The byte after a backslash inside a string. */
  InEscape: 7,
  /** Inside a number, true, false or null: ends at the first byte that cannot continue one. */
  InBareword: 8,
} as const;
type Expect = (typeof Expect)[keyof typeof Expect];

// A double has 17 significant digits; JSON.parse of a 35 MB number took 74 ms, and no field needs one.
const maxBarewordBytes = 100;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OBJECT = 0;
const ARRAY = 1;
// The bytes a number or a literal may hold; JSON.parse checks their order.
const barewordByte = new Uint8Array(256);
for (const byte of Buffer.from('0123456789+-.eEtruefalsn')) barewordByte[byte] = 1;
// Literals start with their first letter; numbers with a digit or a minus.
const barewordStart = new Uint8Array(256);
for (const byte of Buffer.from('0123456789-tfn')) barewordStart[byte] = 1;

export class JsonGuard {
  private expect: Expect = Expect.Value;
  private readonly containers: Uint8Array;
  private depth = 0;
  private values = 0;
  private stringIsKey = false;
  private barewordBytes = 0;
  private keyBytes = 0;
  /** Bytes of earlier chunks, so positions count from the start of the body. */
  private offset = 0;
  private line = 1;
  private lineStart = 0;
  private sawValue = false;
  private sawTopValue = false;
  /** Where the string value being scanned starts (its first byte after the quote), and whether it has escapes. */
  private stringStart = 0;
  private stringEscaped = false;
  /** Where the last escape of that string began, and the places it may be cut (see LongString). */
  private lastEscape = 0;
  private stringCuts: number[] = [];
  /** The string values of at least `longStringBytes`, so the reader can decode them without one JSON.parse. */
  readonly longStrings: LongString[] = [];
  private readonly longStringBytes: number;
  private readonly cutBytes: number;

  private readonly bounds: JsonBounds;

  constructor(
    bounds: JsonBounds = defaultJsonBounds,
    longStringBytes = Number.POSITIVE_INFINITY,
    cutBytes = 4 * 1024 * 1024,
  ) {
    this.bounds = bounds;
    this.longStringBytes = longStringBytes;
    this.cutBytes = cutBytes;
    this.containers = new Uint8Array(bounds.maxDepth + 1);
  }

  /** Whether the body so far held anything but whitespace (an empty body may stand for a default). */
  get isEmpty(): boolean {
    return !this.sawValue;
  }

  /** Checks the next chunk; throws invalid_json or request_too_complex as soon as one is due. */
  scan(chunk: Uint8Array): void {
    const bytes = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const end = bytes.length;
    let i = 0;
    // A UTF-8 byte order mark, which request.text() drops too.
    if (this.offset === 0 && end >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
    // The next quote and backslash at or after the scan position, found once per chunk and reused until the
    // scan passes them: a string full of escapes costs one indexOf per escape, not one per byte.
    let nextQuote = -1;
    let nextBackslash = -1;
    // A chunk that starts inside a string, past any escape, starts where the string may be cut.
    if (this.expect === Expect.InString && !this.stringIsKey && this.offset - this.lastEscape > 6) {
      this.maybeCut(this.offset);
    }
    while (i < end) {
      if (this.expect === Expect.InString) {
        if (nextQuote < i) nextQuote = indexOrEnd(bytes, QUOTE, i);
        if (nextBackslash < i) nextBackslash = indexOrEnd(bytes, BACKSLASH, i);
        const stop = Math.min(nextQuote, nextBackslash);
        if (this.stringIsKey) this.countKeyBytes(Math.min(stop, end) - i, i);
        if (stop >= end) break;
        if (stop === nextBackslash) {
          this.expect = Expect.InEscape;
          this.stringEscaped = true;
          if (!this.stringIsKey) {
            // Just before an escape is always a place to cut.
            this.maybeCut(this.offset + stop);
            this.lastEscape = this.offset + stop;
          }
          i = stop + 1;
          continue;
        }
        this.expect = Expect.CommaOrClose;
        if (this.stringIsKey) this.expect = Expect.Colon;
        else this.endString(this.offset + stop);
        i = stop + 1;
        continue;
      }
      if (this.expect === Expect.InEscape) {
        // JSON.parse checks the escape itself; skipping its first byte is enough to keep `\"` inside.
        this.expect = Expect.InString;
        if (this.stringIsKey) this.countKeyBytes(2, i);
        i += 1;
        continue;
      }
      const byte = bytes[i] as number;
      if (this.expect === Expect.InBareword) {
        if (barewordByte[byte] === 1) {
          this.barewordBytes += 1;
          if (this.barewordBytes > maxBarewordBytes) {
            throw tooComplex(`has a number longer than ${maxBarewordBytes} characters`);
          }
          i += 1;
          continue;
        }
        this.expect = Expect.CommaOrClose;
      }
      if (byte === 0x20 || byte === 0x09 || byte === 0x0d) {
        i += 1;
        continue;
      }
      if (byte === 0x0a) {
        this.line += 1;
        this.lineStart = this.offset + i + 1;
        i += 1;
        continue;
      }
      this.sawValue = true;
      this.step(byte, i);
      i += 1;
    }
    this.offset += end;
  }

  /**
   * Checks that the body ended where a JSON text may end; false for a body of only whitespace (which a
   * caller may read as a default), an invalid_json refusal for one that stops inside a value.
   */
  finish(): boolean {
    if (!this.sawValue) return false;
    const complete =
      this.sawTopValue &&
      this.depth === 0 &&
      (this.expect === Expect.CommaOrClose || this.expect === Expect.InBareword);
    if (!complete) throw this.syntaxError('the body ends before the JSON text does', 0);
    return true;
  }

  private step(byte: number, at: number): void {
    switch (this.expect) {
      case Expect.Value:
      case Expect.ValueOrClose:
        if (byte === 0x5d && this.expect === Expect.ValueOrClose) this.close(ARRAY, at);
        else this.startValue(byte, at);
        return;
      case Expect.KeyOrClose:
      case Expect.Key:
        if (byte === 0x7d && this.expect === Expect.KeyOrClose) {
          this.close(OBJECT, at);
          return;
        }
        if (byte !== QUOTE) throw this.syntaxError('expected a quoted object key', at);
        this.countValue(at);
        this.stringIsKey = true;
        this.keyBytes = 0;
        this.expect = Expect.InString;
        return;
      case Expect.Colon:
        if (byte !== 0x3a) throw this.syntaxError('expected `:` after an object key', at);
        this.expect = Expect.Value;
        return;
      case Expect.CommaOrClose: {
        if (this.depth === 0) throw this.syntaxError('unexpected text after the JSON value', at);
        const container = this.containers[this.depth];
        if (byte === 0x2c) {
          this.expect = container === OBJECT ? Expect.Key : Expect.Value;
          return;
        }
        if (byte === 0x7d || byte === 0x5d) {
          this.close(byte === 0x7d ? OBJECT : ARRAY, at);
          return;
        }
        throw this.syntaxError('expected `,` or the end of the object or array', at);
      }
      default:
        throw this.syntaxError('unexpected character', at);
    }
  }

  private startValue(byte: number, at: number): void {
    if (this.depth === 0 && this.sawTopValue)
      throw this.syntaxError('unexpected text after the JSON value', at);
    if (this.depth === 0) this.sawTopValue = true;
    this.countValue(at);
    if (byte === QUOTE) {
      this.stringIsKey = false;
      this.stringStart = this.offset + at + 1;
      this.stringEscaped = false;
      this.lastEscape = this.stringStart;
      this.stringCuts = [];
      this.expect = Expect.InString;
    } else if (byte === 0x7b || byte === 0x5b) {
      if (this.depth >= this.bounds.maxDepth) {
        throw tooComplex(`nests objects and arrays deeper than ${this.bounds.maxDepth} levels`);
      }
      this.depth += 1;
      this.containers[this.depth] = byte === 0x7b ? OBJECT : ARRAY;
      this.expect = byte === 0x7b ? Expect.KeyOrClose : Expect.ValueOrClose;
    } else if (barewordStart[byte] === 1) {
      this.barewordBytes = 1;
      this.expect = Expect.InBareword;
    } else {
      throw this.syntaxError('expected a value', at);
    }
  }

  private endString(end: number): void {
    if (end - this.stringStart >= this.longStringBytes) {
      const cuts = this.stringEscaped ? this.stringCuts.filter((cut) => cut < end) : [];
      this.longStrings.push({ start: this.stringStart, end, escaped: this.stringEscaped, cuts });
    }
  }

  private maybeCut(at: number): void {
    const last = this.stringCuts.at(-1) ?? this.stringStart;
    if (at - last >= this.cutBytes) this.stringCuts.push(at);
  }

  private close(container: number, at: number): void {
    if (this.containers[this.depth] !== container) {
      throw this.syntaxError(`unexpected \`${container === OBJECT ? '}' : ']'}\``, at);
    }
    this.depth -= 1;
    this.expect = Expect.CommaOrClose;
  }

  private countValue(at: number): void {
    this.values += 1;
    if (this.values > this.bounds.maxValues) {
      throw tooComplex(`holds more than ${this.bounds.maxValues} values (at byte ${this.offset + at})`);
    }
  }

  private countKeyBytes(bytes: number, at: number): void {
    this.keyBytes += bytes;
    if (this.keyBytes > this.bounds.maxKeyBytes) {
      throw tooComplex(
        `has an object key longer than ${this.bounds.maxKeyBytes} bytes (at byte ${this.offset + at})`,
      );
    }
  }

  private syntaxError(problem: string, at: number): RelayError {
    const position = this.offset + at;
    return invalidJsonAt(problem, position, this.line, position - this.lineStart + 1);
  }
}

/**
 * A string value the guard saw, as a byte range of the body (quotes excluded). Without escapes its text is
 * exactly its bytes. With escapes, `cuts` are places (about `cutBytes` apart) where it may be split into
 * pieces that are each a JSON string body: never inside an escape, so each piece parses on its own (a
 * surrogate pair split across two pieces joins up again when the pieces are joined).
 */
export interface LongString {
  start: number;
  end: number;
  escaped: boolean;
  cuts: number[];
}

/** `longStringBytes`: record string values at least this long (JsonGuard.longStrings), cut every `cutBytes`. */
export function createJsonGuard(
  bounds: JsonBounds = defaultJsonBounds,
  longStringBytes = Number.POSITIVE_INFINITY,
  cutBytes?: number,
): JsonGuard {
  return new JsonGuard(bounds, longStringBytes, cutBytes);
}

function indexOrEnd(bytes: Buffer, byte: number, from: number): number {
  const found = bytes.indexOf(byte, from);
  return found === -1 ? bytes.length : found;
}

/** invalid_json naming only where the body went wrong: never a fragment of it, which may be message text. */
export function invalidJsonAt(problem: string, position: number, line: number, column: number): RelayError {
  return new RelayError('invalid_json', {
    message: `The request body is not valid JSON: ${problem} at byte ${position} (line ${line}, column ${column}).`,
  });
}

function tooComplex(bound: string): RelayError {
  return new RelayError('request_too_complex', {
    message: `The request body ${bound}; no request needs that. Nothing was sent.`,
  });
}
