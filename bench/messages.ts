import { randomBytes } from 'node:crypto';

/**
 * The benchmark's messages: a 10 KB text body, or the same plus a 1 MB attachment. The relay receives them
 * as the JSON a caller would POST; bare nodemailer receives the equivalent message object with the
 * attachment already as bytes (an application that sends directly never base64-encodes it into JSON).
 */
export interface MessageShape {
  name: string;
  bodyBytes: number;
  attachmentBytes: number;
}

export const mailboxAddress = (index: number) => `mailbox${index}@bench.contoso.com`;

export interface MessageFactory {
  shape: MessageShape;
  /** The JSON body for message `id` from `mailbox`, and its length in bytes (ASCII only). */
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
}

export function createMessageFactory(shape: MessageShape): MessageFactory {
  // Readable text (lines of 76 characters) so the encoders do the work they would do on real mail.
  const line = 'The quick brown fox jumps over the lazy dog while the relay measures itself. ';
  const text = line.repeat(Math.ceil(shape.bodyBytes / line.length)).slice(0, shape.bodyBytes);
  const attachment = shape.attachmentBytes > 0 ? randomBytes(shape.attachmentBytes) : undefined;
  // Callers send base64 in 76-character lines as often as not; the relay must accept both.
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

  return {
    shape,
    json(id, mailbox) {
      const head = `{"from":"${mailbox}","to":"ops@contoso.com","subject":"Benchmark message ${id}","headers":{"X-Bench-Id":"${id}"},`;
      return { text: head + tail, bytes: head.length + tailBytes };
    },
    mail(id, mailbox) {
      return {
        from: mailbox,
        to: 'ops@contoso.com',
        subject: `Benchmark message ${id}`,
        text,
        headers: { 'X-Bench-Id': id },
        attachments:
          attachment === undefined
            ? []
            : [{ filename: 'report.bin', contentType: 'application/octet-stream', content: attachment }],
      };
    },
  };
}
