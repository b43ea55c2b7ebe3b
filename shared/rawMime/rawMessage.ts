import { Readable } from 'node:stream';
import type { SendMailOptions } from 'nodemailer';
import { RelayError } from '../errors.ts';
import type { MailAddress, MessageLimits } from '../message.ts';
import type { SenderRelation } from '../senderRoutes.ts';
import {
  invalidMime,
  MAX_HEADER_SECTION_BYTES,
  type ParsedHeaders,
  parseHeaderSection,
} from './headerSection.ts';
import { createLineEndingNormaliser } from './lineEndings.ts';

/**
 * A raw MIME message (POST /api/send with Content-Type: message/rfc822) on its way to SMTP: its header
 * section read and checked, its body still in the request (or a spilled blob) and read only while it is
 * sent, so it is never held whole. Its size as sent is counted while it streams; over the limit the stream
 * fails, nodemailer closes the connection without the terminating dot, and Exchange keeps nothing.
 */
export interface RawMessage {
  from: MailAddress;
  recipients: readonly string[];
  messageId: string;
  /**
   * nodemailer's options for sending it through `signIn` on a route of `relation`: the envelope, and the
   * message as a stream made for each attempt (a one-shot body survives mailSender's retry after a refused
   * token, which fails before DATA; a second attempt after the body was read fails as transient).
   */
  mailOptions(relation: SenderRelation, signIn: string): SendMailOptions;
  /** The message as stored for a queued or idempotent send: normalised, Message-ID and Date added, Bcc kept. */
  storedForm(): Readable;
  /** Why the message's own stream failed (too large, body unreadable), once it did. */
  failure(): RelayError | undefined;
  /**
   * Done with the message, sent or not: what is left of a request body is drained (up to the message
   * limit) and dropped, a stored one closed. Called once every attempt has ended.
   */
  discard(): void;
}

/** A request body (a web stream is async iterable) or a blob download; an absent body is an empty list. */
export type BodySource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

const BLANK_LINE = Buffer.from('\r\n');

/** Reads and checks the header section from `body`; the rest of the body is read when the message is sent. */
export async function openRawMessage(
  body: BodySource,
  limits: MessageLimits,
  origin: 'request' | 'stored' = 'request',
): Promise<RawMessage> {
  // The request body is never destroyed here: cancelling it would take the connection down with it, and
  // the caller would get a reset instead of the answer. A refused message's body is drained instead.
  const source = Readable.from(body, { objectMode: false });
  const normalised = createLineEndingNormaliser();
  source.on('error', (error) => normalised.destroy(error));
  source.pipe(normalised);
  const chunks = normalised[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const { section, rest } = await readHeaderSection(chunks);
  let headers: ParsedHeaders;
  try {
    headers = parseHeaderSection(section, limits);
  } catch (error) {
    release(section.length + rest.length);
    throw error;
  }
  return rawMessageOf(headers, rest, chunks, limits.maxMessageBytes, release);

  // A stored message (a blob download) is simply closed.
  function release(alreadyRead: number): void {
    if (origin === 'stored') source.destroy();
    else drain(chunks, alreadyRead, limits.maxMessageBytes);
  }
}

/**
 * Reads what is left of a body the relay will not send and drops it, so the caller's upload completes and
 * it reads the answer on a connection left usable; a body beyond the message limit is left unread (the host
 * closes that connection).
 */
function drain(chunks: AsyncIterator<Buffer>, alreadyRead: number, maxMessageBytes: number): void {
  let read = alreadyRead;
  void (async () => {
    while (read <= maxMessageBytes) {
      const next = await chunks.next();
      if (next.done === true) return;
      read += next.value.length;
    }
  })().catch(() => undefined);
}

/**
 * Reads up to the empty line that ends the header section. Chunks are held as they come and joined once
 * (a body sent in many tiny chunks must not cost a copy of everything so far per chunk); each new chunk is
 * searched together with the last 3 bytes before it, since CRLF CRLF may span chunks. The search starts
 * after a virtual CRLF, so a message that begins with its empty line (no header fields at all, which the
 * From check then refuses) ends its header section at once.
 */
async function readHeaderSection(chunks: AsyncIterator<Buffer>): Promise<{ section: Buffer; rest: Buffer }> {
  const held: Buffer[] = [];
  let heldBytes = 0;
  let tail: Buffer = Buffer.from('\r\n');
  // Where `tail` starts in the body (the virtual CRLF starts before it).
  let tailAt = -2;
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await chunks.next();
    } catch (error) {
      throw error instanceof RelayError ? error : unreadableBody();
    }
    // A message of headers only (RFC 5322 allows no body).
    if (next.done === true) return { section: Buffer.concat(held), rest: Buffer.alloc(0) };
    const window = Buffer.concat([tail, next.value]);
    const found = window.indexOf('\r\n\r\n');
    held.push(next.value);
    heldBytes += next.value.length;
    if (found !== -1) {
      const blankLineAt = tailAt + found + 2;
      const all = Buffer.concat(held);
      return { section: all.subarray(0, blankLineAt), rest: all.subarray(blankLineAt + 2) };
    }
    if (heldBytes > MAX_HEADER_SECTION_BYTES) {
      throw invalidMime([
        { field: 'headers', message: `the header section is longer than ${MAX_HEADER_SECTION_BYTES} bytes` },
      ]);
    }
    tail = window.subarray(Math.max(0, window.length - 3));
    tailAt = heldBytes - tail.length;
  }
}

/**
 * nodemailer's pool sends a message again over a new connection when a reused one closed before the
 * message was read, by piping the same content stream a second time; whatever the first pipe had already
 * taken would be missing from the second (a message without its header section). A second pipe therefore
 * fails the stream: nothing is sent, and the send fails as transient.
 */
class SinglePipeReadable extends Readable {
  onSecondPipe: () => void = () => {};
  #piped = false;
  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    if (this.#piped) {
      this.onSecondPipe();
      this.destroy(new Error('message stream piped twice'));
      return destination;
    }
    this.#piped = true;
    return super.pipe(destination, options);
  }
}

function unreadableBody(): RelayError {
  return invalidMime([
    { field: '(body)', message: 'could not be read to its end (the request was cut off)' },
  ]);
}

export function messageTooLarge(maxMessageBytes: number): RelayError {
  return new RelayError('message_too_large', {
    message: `The message is larger than ${maxMessageBytes} bytes as sent (RELAY_MAX_MESSAGE_BYTES); nothing was sent.`,
    remedy: 'Send smaller attachments, or share large files by link.',
    details: { maxMessageBytes },
  });
}

function rawMessageOf(
  headers: ParsedHeaders,
  rest: Buffer,
  chunks: AsyncIterator<Buffer>,
  maxMessageBytes: number,
  release: (alreadyRead: number) => void,
): RawMessage {
  let claimed = false;
  let discarded = false;
  let failed: RelayError | undefined;
  let counted = 0;
  let leftover: Buffer | undefined = rest.length > 0 ? rest : undefined;

  /** The next piece of the body, counted against the limit; null at its end. */
  async function nextBodyChunk(): Promise<Buffer | null> {
    let chunk: Buffer | null;
    if (leftover !== undefined) {
      chunk = leftover;
      leftover = undefined;
    } else {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (error) {
        failed ??= error instanceof RelayError ? error : unreadableBody();
        throw failed;
      }
      chunk = next.done === true ? null : next.value;
    }
    if (chunk !== null) {
      counted += chunk.length;
      if (counted > maxMessageBytes) {
        failed ??= messageTooLarge(maxMessageBytes);
        throw failed;
      }
    }
    return chunk;
  }

  const replayed = () =>
    new RelayError('smtp_transient', {
      message:
        'The SMTP conversation failed after the message had started to stream from the request, which cannot be read twice; nothing was sent.',
      remedy: 'Send the request again.',
    });

  /** One reading of the message: `head` then the body. Only the first reading may have the body. */
  function messageStream(head: Buffer): Readable {
    let started = false;
    const stream = new SinglePipeReadable({
      read() {
        if (!started) {
          started = true;
          if (claimed) {
            // The body went to an earlier attempt that failed after reading it: this one cannot send it.
            failed ??= replayed();
            this.destroy(new Error('message body already read'));
            return;
          }
          claimed = true;
          counted = head.length;
          if (counted > maxMessageBytes) {
            failed ??= messageTooLarge(maxMessageBytes);
            this.destroy(new Error('message too large'));
            return;
          }
          this.push(head);
          return;
        }
        nextBodyChunk().then(
          (chunk) => this.push(chunk),
          // A plain error: nodemailer rewrites the code of an error it is handed; the cause is `failed`.
          () => this.destroy(new Error('message stream failed')),
        );
      },
    });
    stream.onSecondPipe = () => {
      failed ??= replayed();
    };
    return stream;
  }

  const kept = (field: { lower: string }, relation: SenderRelation | 'stored') => {
    if (relation === 'stored') return true;
    // The Bcc field never reaches recipients: its addresses are in the envelope only.
    if (field.lower === 'bcc') return false;
    // The Sender field is the relay's: on behalf of another address it must name the signed-in mailbox
    // (Exchange checks it); as self or Send As none is needed (one From mailbox, RFC 5322 3.6.2), and a
    // caller's Sender naming anyone else would only make Exchange refuse the message after DATA.
    return field.lower !== 'sender';
  };
  const headBytes = (relation: SenderRelation | 'stored', signIn?: string) =>
    Buffer.concat([
      // What the relay adds goes first, as a trace field would (RFC 5322 3.6 sets no order).
      headers.added,
      ...(relation === 'sendOnBehalf' ? [Buffer.from(`Sender: ${signIn}\r\n`, 'utf8')] : []),
      ...headers.fields.filter((field) => kept(field, relation)).map((field) => field.bytes),
      BLANK_LINE,
    ]);

  return {
    from: headers.from,
    recipients: headers.recipients,
    messageId: headers.messageId,
    mailOptions(relation, signIn) {
      const head = headBytes(relation, signIn);
      const options: SendMailOptions = {
        // The mailbox that signs in, as authorized (for a message as itself, its From address as compared):
        // it receives the bounces (shared/relay.ts addressedFor).
        envelope: { from: signIn, to: [...headers.recipients] },
        messageId: headers.messageId,
        disableFileAccess: true,
        disableUrlAccess: true,
      };
      // A getter: nodemailer copies the options once per sendMail, so each attempt gets its own stream.
      Object.defineProperty(options, 'raw', { enumerable: true, get: () => messageStream(head) });
      return options;
    },
    storedForm: () => messageStream(headBytes('stored')),
    failure: () => failed,
    discard() {
      if (discarded) return;
      discarded = true;
      // No later attempt may start on what is left; a body already over the limit is not read further.
      const read = claimed ? counted : rest.length;
      claimed = true;
      if (failed?.code !== 'message_too_large') release(read);
    },
  };
}
