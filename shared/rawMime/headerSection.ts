import { randomUUID } from 'node:crypto';
import { type FieldProblem, RelayError } from '../errors.ts';
import { headerUnsafe, loneSurrogate, MAX_LINE_OCTETS, reservedHeaderProblem } from '../headerRules.ts';
import { domainOf, parseMailboxList } from '../mailAddress.ts';
import type { MailAddress, MessageLimits } from '../message.ts';

/**
 * The header section of a raw MIME message (RFC 5322 2.2), read and checked before anything is sent: the
 * same injection rules as a JSON send's headers (shared/headerRules.ts), the originator and destination
 * fields at most once each (RFC 5322 3.6), exactly one From mailbox, the recipients from To, Cc and Bcc.
 * Its input has CRLF line endings already (shared/rawMime/lineEndings.ts). Errors name the header and never
 * echo its value.
 */

/** More than any real message's header section needs (Exchange itself caps headers at 256 KB). */
export const MAX_HEADER_SECTION_BYTES = 256 * 1024;

export interface HeaderField {
  /** As written, e.g. `Subject`. */
  name: string;
  lower: string;
  /** Every line of the field as written (folding kept), each with its CRLF. */
  bytes: Buffer;
  /** Unfolded, without the name and colon. */
  value: string;
}

export interface ParsedHeaders {
  fields: HeaderField[];
  from: MailAddress;
  recipients: string[];
  /** The Message-ID field's value, e.g. `<abc@contoso.com>`. */
  messageId: string;
  /** Fields the relay added: Message-ID and Date when the message had none, with their CRLF. */
  added: Buffer;
}

// RFC 5322 3.6: each of these at most once.
const singletonFields = ['from', 'sender', 'to', 'cc', 'bcc', 'subject', 'message-id', 'date'] as const;
const recipientFields = ['to', 'cc', 'bcc'] as const;
// RFC 5322 3.6.8: printable US-ASCII except the colon.
const fieldName = /^[\x21-\x39\x3b-\x7e]+$/;
const messageIdShape = /^<[^\s<>]+@[^\s<>]+>$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function invalidMime(problems: FieldProblem[]): RelayError {
  return new RelayError('invalid_mime', {
    message: `The message's header section is invalid: ${problems.map((problem) => `${problem.field} ${problem.message}`).join('; ')}. Nothing was sent.`,
    details: problems,
  });
}

const headerField = (name: string) => `headers.${name.slice(0, 80)}`;

/** The header section `section` (its lines with their CRLF, without the empty line that ends it). */
export function parseHeaderSection(section: Buffer, limits: MessageLimits): ParsedHeaders {
  const fields = splitFields(section);
  const problems: FieldProblem[] = [];
  const byName = new Map<string, HeaderField[]>();
  for (const field of fields) {
    const reserved = reservedHeaderProblem(field.name);
    if (reserved !== undefined) problems.push({ field: headerField(field.name), message: reserved });
    if (headerUnsafe.test(field.value) || loneSurrogate.test(field.value)) {
      problems.push({
        field: headerField(field.name),
        message: 'must not contain control characters (tab excepted)',
      });
    }
    byName.set(field.lower, [...(byName.get(field.lower) ?? []), field]);
  }
  for (const name of singletonFields) {
    const found = byName.get(name) ?? [];
    if (found.length > 1) {
      problems.push({
        field: headerField(found[0]?.name ?? name),
        message: `appears ${found.length} times; RFC 5322 allows it once`,
      });
    }
  }
  const fromField = byName.get('from')?.[0];
  const fromMailboxes = fromField === undefined ? [] : (parseMailboxList(fromField.value) ?? []);
  const from = fromMailboxes.length === 1 ? fromMailboxes[0] : undefined;
  if (fromField === undefined) problems.push({ field: 'headers.From', message: 'is required' });
  else if (from === undefined) {
    problems.push({ field: headerField(fromField.name), message: 'must name exactly one sender mailbox' });
  }
  const recipients: string[] = [];
  for (const name of recipientFields) {
    for (const field of byName.get(name) ?? []) {
      const mailboxes = parseMailboxList(field.value);
      if (mailboxes === undefined) {
        problems.push({
          field: headerField(field.name),
          message: 'holds an entry that is not an email address',
        });
      } else {
        recipients.push(...mailboxes.map((mailbox) => mailbox.address));
      }
    }
  }
  if (recipients.length === 0 && problems.length === 0) {
    problems.push({ field: 'headers.To', message: 'at least one recipient is required in To, Cc or Bcc' });
  }
  const messageIdField = byName.get('message-id')?.[0];
  if (messageIdField !== undefined && !messageIdShape.test(messageIdField.value.trim())) {
    problems.push({ field: headerField(messageIdField.name), message: 'must be one <id@domain>' });
  }
  if (problems.length > 0 || from === undefined) throw invalidMime(problems);
  if (recipients.length > limits.maxRecipients) {
    throw new RelayError('too_many_recipients', {
      message: `The message has ${recipients.length} recipients; at most ${limits.maxRecipients} are allowed per message.`,
      details: { recipients: recipients.length, maxRecipients: limits.maxRecipients },
    });
  }
  let added = '';
  let messageId = messageIdField?.value.trim();
  if (messageId === undefined) {
    messageId = `<${randomUUID()}@${domainOf(from.address)}>`;
    added += `Message-ID: ${messageId}\r\n`;
  }
  // RFC 5322 3.3 date-time, as nodemailer writes it.
  if (!byName.has('date')) added += `Date: ${new Date().toUTCString().replace(/GMT$/, '+0000')}\r\n`;
  return {
    fields,
    from: { name: from.name, address: from.address },
    recipients,
    messageId,
    added: Buffer.from(added, 'utf8'),
  };
}

function splitFields(section: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let current: { name: string; lines: Buffer[] } | undefined;
  const finish = () => {
    if (current === undefined) return;
    const bytes = Buffer.concat(current.lines);
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      throw invalidMime([{ field: headerField(current.name), message: 'is not valid UTF-8' }]);
    }
    const unfolded = text.replace(/\r\n(?=[ \t])/g, '').replace(/\r\n$/, '');
    fields.push({
      name: current.name,
      lower: current.name.toLowerCase(),
      bytes,
      value: unfolded.slice(unfolded.indexOf(':') + 1).replace(/^[ \t]+/, ''),
    });
  };
  let start = 0;
  let lineNumber = 0;
  while (start < section.length) {
    const end = section.indexOf('\r\n', start);
    const next = end === -1 ? section.length : end + 2;
    const line = section.subarray(start, next);
    const contentLength = (end === -1 ? section.length : end) - start;
    lineNumber += 1;
    const continues = line[0] === 0x20 || line[0] === 0x09;
    if (continues) {
      if (current === undefined) {
        throw invalidMime([{ field: 'headers', message: 'begins with a folded (indented) line' }]);
      }
    } else {
      finish();
      const colon = line.indexOf(0x3a);
      const name = colon === -1 ? '' : line.subarray(0, colon).toString('latin1');
      if (!fieldName.test(name)) {
        throw invalidMime([
          { field: 'headers', message: `line ${lineNumber} is not a header field (name: value)` },
        ]);
      }
      current = { name, lines: [] };
    }
    if (contentLength > MAX_LINE_OCTETS) {
      throw invalidMime([
        {
          field: headerField(current?.name ?? 'headers'),
          message: `has a line of ${contentLength} octets; RFC 5322 allows ${MAX_LINE_OCTETS}`,
        },
      ]);
    }
    current?.lines.push(end === -1 ? Buffer.concat([line, Buffer.from('\r\n')]) : line);
    start = next;
  }
  finish();
  return fields;
}
