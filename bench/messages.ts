import { randomBytes } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer';

/**
 * The benchmark's messages: a 10 KB text body, or the same plus a 1 MB attachment. The relay receives them
 * as the JSON a caller would POST, or as the raw MIME a mail library would hand over; bare nodemailer
 * receives the equivalent message object with the attachment already as bytes (an application that sends
 * directly never base64-encodes it into JSON), or the same raw MIME.
 */
export interface MessageShape {
  name: string;
  bodyBytes: number;
  attachmentBytes: number;
}

export const mailboxAddress = (index: number) => `mailbox${index}@bench.contoso.com`;
export const benchRecipient = 'ops@contoso.com';

/** A whole MIME message as a stream would deliver it: its own header block, then the shared body chunks. */
export interface RawMessage {
  chunks: Buffer[];
  bytes: number;
}

export interface MessageFactory {
  shape: MessageShape;
  /** The JSON body for message `id` from `mailbox`, and its length in bytes. */
  json(id: string, mailbox: string): { text: string; bytes: number };
  /** The nodemailer message for bare nodemailer. */
  mail(
    id: string,
    mailbox: string,
  ): {
    from: string;
    to: string;
    subject: string;
    text: string;
    headers: Record<string, string>;
    attachments: { filename: string; contentType: string; content: Buffer }[];
  };
  /** The same message as raw MIME (what `mail` composes to), in stream-sized chunks. */
  raw(id: string, mailbox: string): Promise<RawMessage>;
}

const words = (
  'the a of to and in for on with is that this be we our your from at as by it are will please note ' +
  'report service mailbox queue server update change window maintenance backup invoice order account ' +
  'customer delivery schedule team meeting review release deploy incident ticket status Monday Tuesday ' +
  'Friday tomorrow today morning afternoon attached summary figures quarter budget approval request ' +
  'follow-up details below thanks regards contract renewal pricing shipment warehouse'
).split(' ');
/** Now and then: a figure, a link, an address, a word from a colleague abroad. */
const rareWords = [
  '12:30',
  '3.5%',
  'Q3',
  '2026',
  'EUR 1,250.00',
  'ops@contoso.com',
  'https://contoso.com/status',
  'Zürich',
  'café',
  'résumé',
  'Grüße',
];

/** The same sequence every run (mulberry32), so both sides and every run send the same text. */
function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let value = Math.imul(state ^ (state >>> 15), 1 | state);
    value = (value + Math.imul(value ^ (value >>> 7), 61 | value)) ^ value;
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Text as mail text is: a greeting, paragraphs of sentences of varied words wrapped at 76 characters
 * (the occasional accented word, number and link among them), blank lines between paragraphs, a
 * signature; about `bytes` bytes of UTF-8.
 */
export function mailText(bytes: number): string {
  const random = seededRandom(bytes);
  const pick = (list: readonly string[]) => list[Math.floor(random() * list.length)] ?? '';
  const signature = '\n\n-- \nOperations\nContoso Ltd. | +41 44 000 00 00\n';
  const paragraphs: string[] = ['Hello team,'];
  let size = Buffer.byteLength(paragraphs[0] ?? '') + Buffer.byteLength(signature);
  while (size < bytes) {
    const lines: string[] = [];
    let line = '';
    const sentences = 2 + Math.floor(random() * 5);
    for (let sentence = 0; sentence < sentences; sentence += 1) {
      const length = 6 + Math.floor(random() * 13);
      for (let index = 0; index < length; index += 1) {
        let word = random() < 0.04 ? pick(rareWords) : pick(words);
        if (index === 0) word = word.charAt(0).toUpperCase() + word.slice(1);
        if (index === length - 1) word += pick(['.', '.', '.', '?', '!']);
        else if (random() < 0.08) word += ',';
        if (line.length > 0 && line.length + 1 + word.length > 76) {
          lines.push(line);
          line = word;
        } else {
          line = line.length === 0 ? word : `${line} ${word}`;
        }
      }
    }
    lines.push(line);
    const paragraph = lines.join('\n');
    paragraphs.push(paragraph);
    size += Buffer.byteLength(paragraph) + 2;
  }
  return paragraphs.join('\n\n') + signature;
}

/** Chunks the size a file or socket stream hands over. */
const streamChunkBytes = 64 * 1024;

export function createMessageFactory(shape: MessageShape): MessageFactory {
  const text = mailText(shape.bodyBytes);
  const attachment = shape.attachmentBytes > 0 ? randomBytes(shape.attachmentBytes) : undefined;
  const attachmentBase64 = attachment?.toString('base64');
  const tail = JSON.stringify({
    text,
    ...(attachment === undefined
      ? {}
      : {
          attachments: [
            { filename: 'report.bin', contentType: 'application/octet-stream', content: attachmentBase64 },
          ],
        }),
  }).slice(1);
  const tailBytes = Buffer.byteLength(tail);
  const subject = (id: string) => `Benchmark message ${id}`;
  const mail: MessageFactory['mail'] = (id, mailbox) => ({
    from: mailbox,
    to: benchRecipient,
    subject: subject(id),
    text,
    headers: { 'X-Bench-Id': id },
    attachments:
      attachment === undefined
        ? []
        : [{ filename: 'report.bin', contentType: 'application/octet-stream', content: attachment }],
  });

  // The raw MIME is composed once by nodemailer itself (what a mail library hands over); each message
  // gets its own header block, with its id, and shares the body's bytes, as a stream read from a file would.
  const placeholder = 'bench-id-placeholder';
  let rawTemplate: Promise<{ header: string; body: Buffer[] }> | undefined;
  const template = () => {
    rawTemplate ??= new MailComposer({
      ...mail(placeholder, 'placeholder@bench.contoso.com'),
      messageId: `<${placeholder}@bench.contoso.com>`,
    })
      .compile()
      .build()
      .then((message) => {
        const headerEnd = message.indexOf('\r\n\r\n') + 4;
        const body: Buffer[] = [];
        for (let offset = headerEnd; offset < message.length; offset += streamChunkBytes) {
          body.push(message.subarray(offset, Math.min(message.length, offset + streamChunkBytes)));
        }
        return { header: message.subarray(0, headerEnd).toString('latin1'), body };
      });
    return rawTemplate;
  };

  return {
    shape,
    json(id, mailbox) {
      const head = `{"from":"${mailbox}","to":"${benchRecipient}","subject":"${subject(id)}","headers":{"X-Bench-Id":"${id}"},`;
      return { text: head + tail, bytes: Buffer.byteLength(head) + tailBytes };
    },
    mail,
    async raw(id, mailbox) {
      const { header, body } = await template();
      const ownHeader = Buffer.from(
        header.replaceAll(placeholder, id).replace('placeholder@bench.contoso.com', mailbox),
        'latin1',
      );
      return {
        chunks: [ownHeader, ...body],
        bytes: ownHeader.length + body.reduce((sum, chunk) => sum + chunk.length, 0),
      };
    },
  };
}
