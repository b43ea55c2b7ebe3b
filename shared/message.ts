import { isAscii } from 'node:buffer';
import type { SendMailOptions } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { z } from 'zod';
import { type FieldProblem, invalidRequest, RelayError } from './errors.ts';
import { headerUnsafe, loneSurrogate, MAX_LINE_OCTETS, reservedHeaderProblem } from './headerRules.ts';
import { canonicalMailbox, mailAddressPattern, parseMailboxList } from './mailAddress.ts';

/**
 * The send request: its schema, the checks that make header injection impossible, and its conversion to a
 * nodemailer message. User-controlled values are checked for CR, LF and other control characters here,
 * once, where they are parsed (nodemailer's own rule), so nothing downstream has to trust them.
 */
export interface MailAddress {
  name: string;
  address: string;
}

export interface MailAttachment {
  filename: string;
  contentType: string | undefined;
  content: Buffer;
  contentId: string | undefined;
}

export type Priority = 'high' | 'normal' | 'low';

export interface SendRequest {
  from: MailAddress;
  to: MailAddress[];
  cc: MailAddress[];
  bcc: MailAddress[];
  replyTo: MailAddress[];
  subject: string;
  text: string | undefined;
  html: string | undefined;
  attachments: MailAttachment[];
  headers: Record<string, string>;
  priority: Priority | undefined;
}

export interface MessageLimits {
  maxMessageBytes: number;
  maxRecipients: number;
}

// Bodies may hold line breaks and tabs, but NUL and the other controls are not text.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const bodyUnsafe = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const notUnicode = 'must be valid Unicode text (it holds an unpaired UTF-16 surrogate)';

const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => !headerUnsafe.test(value), 'must not contain CR, LF or other control characters')
    .refine((value) => !loneSurrogate.test(value), notUnicode);

/**
 * nodemailer folds a header at its spaces and writes non-ASCII text as encoded-words of at most 75
 * characters, but a run of ASCII without a space cannot be folded: it goes out as one line. 900 characters
 * plus the longest header name the relay writes (an X- name of 78) and `: ` stay within RFC 5322's 998
 * octets a line.
 */
const maxUnbrokenRun = MAX_LINE_OCTETS - 98;
const unbrokenRun = new RegExp(`[!-~]{${maxUnbrokenRun + 1}}`);
const foldableHeaderText = (max: number) =>
  headerText(max).refine(
    (value) => !unbrokenRun.test(value),
    `must not hold more than ${maxUnbrokenRun} characters without a space (a line of a message is at most ${MAX_LINE_OCTETS} octets)`,
  );

const maxDisplayName = 200;

const addressObject = z.strictObject({
  address: headerText(320).refine((value) => mailAddressPattern.test(value), 'must be an email address'),
  name: headerText(maxDisplayName).optional(),
});

/** A string may carry one or several `Name <address>` entries, as mail clients write them. */
const addressString = headerText(20_000).transform((value, ctx): MailAddress[] => {
  const mailboxes = parseMailboxList(value);
  if (mailboxes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value.slice(0, 100)}" is not a valid address` });
    return z.NEVER;
  }
  if (mailboxes.some((mailbox) => mailbox.name.length > maxDisplayName)) {
    ctx.addIssue({ code: 'custom', message: `a display name is longer than ${maxDisplayName} characters` });
    return z.NEVER;
  }
  if (mailboxes.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'must name at least one address' });
    return z.NEVER;
  }
  return mailboxes;
});

/**
 * A string, an {address, name} object, or (for lists) an array of these. Dispatching on the input's type
 * rather than trying each schema in turn keeps the reported path exact (`to[1].name`, not just `to`).
 */
function parseWith<T>(schema: z.ZodType<T>, value: unknown, ctx: z.RefinementCtx): T | typeof z.NEVER {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues)
    ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  return z.NEVER;
}

const objectAddress = addressObject.transform((entry) => [toMailAddress(entry)]);

function parseOneAddress(value: unknown, ctx: z.RefinementCtx): MailAddress[] | typeof z.NEVER {
  if (typeof value === 'string') return parseWith(addressString, value, ctx);
  if (typeof value === 'object' && value !== null && !Array.isArray(value))
    return parseWith(objectAddress, value, ctx);
  ctx.addIssue({ code: 'custom', message: 'must be an address string or an {address, name} object' });
  return z.NEVER;
}

const oneAddress = z.unknown().transform(parseOneAddress);

const maxAddressEntries = 1000;

const addressList = z.unknown().transform((value, ctx) => {
  if (!Array.isArray(value)) return parseOneAddress(value, ctx);
  if (value.length > maxAddressEntries) {
    ctx.addIssue({ code: 'custom', message: `at most ${maxAddressEntries} entries` });
    return z.NEVER;
  }
  const entries = parseWith(z.array(oneAddress), value, ctx);
  return entries === z.NEVER ? z.NEVER : entries.flat();
});

function toMailAddress(entry: { address: string; name?: string | undefined }): MailAddress {
  return { name: entry.name ?? '', address: entry.address };
}

// Attachments are the bulk of a request, so this runs over megabyte-sized strings: validation rides on the
// one decoding pass. Node's decoder skips characters outside the alphabet, so any such character (or padding
// inside the text) yields fewer bytes than the length promises; a regular expression over the whole string
// cost ~10 ms per megabyte. Unwrapped base64 (the common case) is decoded once, with no search for line
// breaks it does not have; only text that fails that check is searched, stripped and decoded again. The
// URL-safe alphabet (- and _) decodes to the bytes the caller meant.
function decodeBase64(text: string): Buffer | undefined {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const decoded = Buffer.from(text, 'base64');
  return text.length % 4 === 0 && decoded.length === (text.length / 4) * 3 - padding ? decoded : undefined;
}

const base64Whitespace = /[\r\n\t ]/;

const base64Content = z.string().transform((value, ctx) => {
  const decoded =
    decodeBase64(value) ??
    (base64Whitespace.test(value) ? decodeBase64(value.replace(/[\r\n\t ]/g, '')) : undefined);
  if (decoded === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be base64' });
    return z.NEVER;
  }
  return decoded;
});

const attachment = z.strictObject({
  filename: headerText(255).min(1),
  contentType: headerText(200)
    .regex(/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/, 'must be a MIME type such as application/pdf')
    .refine(
      (value) => !/^multipart\//i.test(value),
      'must not be multipart/*: a multipart type is a container of parts, not an attachment; attach each part, or send the whole message as raw MIME (Content-Type: message/rfc822)',
    )
    .optional(),
  content: base64Content,
  contentId: headerText(250)
    .regex(/^[^\s<>]+$/, 'must be an id without spaces or angle brackets')
    .optional(),
});

// Header names are case-insensitive (RFC 5322): x-entity-ref-id is as much an X- header as X-Entity-Ref-ID.
// Underscores are field-name characters too (metadata keys such as order_id become X-PM-Metadata-order_id).
export const customHeaderName = /^X-[A-Za-z0-9_-]{1,76}$/i;
export const customHeaderRule =
  'only X- headers may be set (letters, digits, - and _, at most 78 characters)';

/**
 * X- headers carry tags and metadata: SendGrid's custom_args (10,000 bytes at most), Postmark's Metadata,
 * Resend's tags and an app's own ids all fit well within 100 headers and 64 KiB; more is not metadata, and
 * every header is parsed by each server and filter on the way.
 */
export const maxCustomHeaders = 100;
export const maxCustomHeaderOctets = 65_536;

const customHeaderValue = foldableHeaderText(2000);

const customHeaders = z.unknown().transform((value, ctx): Record<string, string> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be an object of X- header names and values' });
    return z.NEVER;
  }
  const names = Object.keys(value);
  if (names.length > maxCustomHeaders) {
    ctx.addIssue({ code: 'custom', message: `at most ${maxCustomHeaders} headers` });
    return z.NEVER;
  }
  const headers: Record<string, string> = {};
  let octets = 0;
  for (const name of names) {
    const problem = customHeaderName.test(name) ? reservedHeaderProblem(name) : customHeaderRule;
    if (problem !== undefined) {
      ctx.addIssue({ code: 'custom', path: [name], message: problem });
      continue;
    }
    const parsed = customHeaderValue.safeParse((value as Record<string, unknown>)[name]);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        ctx.addIssue({ code: 'custom', path: [name], message: issue.message });
      continue;
    }
    headers[name] = parsed.data;
    octets += name.length + Buffer.byteLength(parsed.data);
  }
  if (octets > maxCustomHeaderOctets) {
    ctx.addIssue({
      code: 'custom',
      message: `names and values together must be at most ${maxCustomHeaderOctets} octets`,
    });
  }
  return headers;
});

const sendRequestSchema = z
  .strictObject({
    from: oneAddress,
    to: addressList.optional(),
    cc: addressList.optional(),
    bcc: addressList.optional(),
    replyTo: addressList.optional(),
    subject: foldableHeaderText(10_000),
    text: z
      .string()
      .refine((value) => !bodyUnsafe.test(value), 'must not contain NUL or control characters')
      .refine((value) => !loneSurrogate.test(value), notUnicode)
      .optional(),
    html: z
      .string()
      .refine((value) => !bodyUnsafe.test(value), 'must not contain NUL or control characters')
      .refine((value) => !loneSurrogate.test(value), notUnicode)
      .optional(),
    attachments: z.array(attachment).max(100).optional(),
    headers: customHeaders.optional(),
    priority: z.enum(['high', 'normal', 'low']).optional(),
  })
  .superRefine((request, ctx) => {
    if (request.from.length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['from'], message: 'must be exactly one sender mailbox' });
    }
    const recipients = (request.to?.length ?? 0) + (request.cc?.length ?? 0) + (request.bcc?.length ?? 0);
    if (recipients === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['to'],
        message: 'at least one recipient is required in to, cc or bcc',
      });
    }
    if (
      request.text === undefined &&
      request.html === undefined &&
      (request.attachments?.length ?? 0) === 0
    ) {
      ctx.addIssue({ code: 'custom', path: ['text'], message: 'give text, html or an attachment' });
    }
  });

/** Turns a zod path into the JSON path a caller can find in their own request: `to[1].address`. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let field = '';
  for (const segment of path) {
    if (typeof segment === 'number') field += `[${segment}]`;
    else field += field === '' ? String(segment) : `.${String(segment)}`;
  }
  return field === '' ? '(body)' : field;
}

export function parseSendRequest(body: unknown, limits: MessageLimits): SendRequest {
  refuseExcessRecipients(body, limits);
  const parsed = sendRequestSchema.safeParse(body);
  if (!parsed.success) {
    const problems: FieldProblem[] = parsed.error.issues.map((issue) => ({
      field: formatFieldPath(issue.path),
      message: issue.message,
    }));
    throw invalidRequest(problems);
  }
  const input = parsed.data;
  const [from] = input.from;
  if (from === undefined) throw invalidRequest([{ field: 'from', message: 'is required' }]);
  const request: SendRequest = {
    from,
    to: input.to ?? [],
    cc: input.cc ?? [],
    bcc: input.bcc ?? [],
    replyTo: input.replyTo ?? [],
    subject: input.subject,
    text: input.text,
    html: input.html,
    attachments: (input.attachments ?? []).map((entry) => ({
      filename: entry.filename,
      contentType: entry.contentType,
      content: entry.content,
      contentId: entry.contentId,
    })),
    headers: input.headers ?? {},
    priority: input.priority,
  };
  enforceLimits(request, limits);
  return request;
}

/**
 * Refuses a request with more recipients than the limit before its address strings are expanded: a string
 * may hold thousands of addresses, and 900 such strings once took 9 s of parsing before the count was
 * checked. Addresses are counted entry by entry across to, cc and bcc and the count stops at the first
 * entry past the limit, so the work is at most one string's parse beyond the limit. Reply-To is held to
 * the same number. Malformed entries are skipped here and named by the schema.
 */
function refuseExcessRecipients(body: unknown, limits: MessageLimits): void {
  if (typeof body !== 'object' || body === null) return;
  const fields = body as Record<string, unknown>;
  const countUpTo = (names: readonly string[], limit: number): number => {
    let count = 0;
    for (const name of names) {
      const value = fields[name];
      const entries = Array.isArray(value) ? value : value === undefined ? [] : [value];
      // A list over the schema's bound is refused by the schema without looking at its entries.
      if (entries.length > maxAddressEntries) continue;
      for (const entry of entries) {
        count += typeof entry === 'string' && entry.length <= 20_000 ? addressCount(entry) : 1;
        if (count > limit) return count;
      }
    }
    return count;
  };
  const recipients = countUpTo(['to', 'cc', 'bcc'], limits.maxRecipients);
  if (recipients > limits.maxRecipients) {
    throw new RelayError('too_many_recipients', {
      message: `The message has more than ${limits.maxRecipients} recipients; at most ${limits.maxRecipients} are allowed per message.`,
      details: { maxRecipients: limits.maxRecipients },
    });
  }
  if (countUpTo(['replyTo'], limits.maxRecipients) > limits.maxRecipients) {
    throw invalidRequest([{ field: 'replyTo', message: `at most ${limits.maxRecipients} addresses` }]);
  }
}

/** How many mailboxes an address string names (at least one: an entry that names none is still an entry). */
function addressCount(value: string): number {
  return Math.max(1, addressparser(value, { flatten: true }).length);
}

export function recipientCount(request: SendRequest): number {
  return request.to.length + request.cc.length + request.bcc.length;
}

/**
 * An upper estimate of the encoded size of everything the message carries, since Exchange counts the
 * encoded size: base64 grows attachments and bodies by 4/3 plus a CRLF every 76 characters (a 7bit message
 * attachment, sent as it is, is smaller still); header text written as quoted-printable encoded-words takes
 * up to 3 octets a byte plus the words' delimiters and folding, so 4 a byte; 4 KiB covers what nodemailer
 * adds (Message-ID, Date, MIME-Version, boundaries, part headers). nodemailer writes a body as
 * quoted-printable only when ASCII letters outnumber the characters it must escape, which keeps it near the
 * base64 size for text; text made mostly of `=` signs can exceed it, and Exchange's own size check answers.
 */
export function estimateEncodedBytes(request: SendRequest): number {
  const base64Growth = (bytes: number) => Math.ceil(bytes / 57) * 78;
  const headerText = (text: string) => 4 * Buffer.byteLength(text) + 16;
  const addresses = (list: readonly MailAddress[]) =>
    list.reduce((sum, entry) => sum + headerText(entry.name) + Buffer.byteLength(entry.address) + 8, 0);
  let total = 4096;
  total += headerText(request.subject);
  total += addresses([request.from]) + addresses(request.to) + addresses(request.cc) + addresses(request.bcc);
  total += addresses(request.replyTo);
  for (const [name, value] of Object.entries(request.headers)) total += name.length + headerText(value);
  if (request.text !== undefined) total += base64Growth(Buffer.byteLength(request.text));
  if (request.html !== undefined) total += base64Growth(Buffer.byteLength(request.html));
  for (const file of request.attachments) {
    total += base64Growth(file.content.length) + 512 + 2 * headerText(file.filename);
    total += headerText(file.contentType ?? '') + headerText(file.contentId ?? '');
  }
  return total;
}

function enforceLimits(request: SendRequest, limits: MessageLimits): void {
  const recipients = recipientCount(request);
  if (recipients > limits.maxRecipients) {
    throw new RelayError('too_many_recipients', {
      message: `The message has ${recipients} recipients; at most ${limits.maxRecipients} are allowed per message.`,
      details: { recipients, maxRecipients: limits.maxRecipients },
    });
  }
  const estimatedBytes = estimateEncodedBytes(request);
  if (estimatedBytes > limits.maxMessageBytes) {
    throw new RelayError('message_too_large', {
      message: `The encoded message would be about ${estimatedBytes} bytes; the limit is ${limits.maxMessageBytes}.`,
      remedy: 'Send smaller attachments, or share large files by link.',
      details: { estimatedBytes, maxMessageBytes: limits.maxMessageBytes },
    });
  }
}

export function senderMailbox(request: SendRequest): string {
  return canonicalMailbox(request.from.address);
}

/**
 * A message attached as message/* cannot be transfer-encoded (RFC 2046 5.2.1 allows only 7bit, 8bit and
 * binary), so it goes out byte for byte. It is sent that way only when it is 7bit (RFC 2045 2.7: ASCII
 * without NUL, lines of at most 998 octets; nodemailer's DATA stream turns every bare CR or LF into CRLF):
 * 8bit would need BODY=8BITMIME, which nodemailer does not declare. Any other content is attached as
 * application/octet-stream in base64 under the caller's filename, so its bytes arrive intact and nothing
 * non-conforming reaches the server.
 */
function messageAttachmentFits7bit(content: Buffer): boolean {
  // `^` with the m flag is tried only at line starts, so the line check is one linear pass.
  return isAscii(content) && content.indexOf(0) === -1 && !overlongLine.test(content.toString('latin1'));
}

const overlongLine = new RegExp(`^.{${MAX_LINE_OCTETS + 1}}`, 'm');

function attachmentOptions(file: MailAttachment): NonNullable<SendMailOptions['attachments']>[number] {
  const common = { filename: file.filename, content: file.content, cid: file.contentId };
  if (file.contentType === undefined || !/^message\//i.test(file.contentType)) {
    return { ...common, contentType: file.contentType };
  }
  if (!messageAttachmentFits7bit(file.content)) {
    return { ...common, contentType: 'application/octet-stream', contentTransferEncoding: 'base64' };
  }
  // nodemailer shows message/* parts inline by default; the caller asked for an attachment.
  return {
    ...common,
    contentType: file.contentType,
    contentDisposition: 'attachment',
    contentTransferEncoding: '7bit',
  };
}

export function toMailOptions(request: SendRequest): SendMailOptions {
  return {
    from: request.from,
    to: request.to,
    cc: request.cc,
    bcc: request.bcc,
    replyTo: request.replyTo.length > 0 ? request.replyTo : undefined,
    subject: request.subject,
    text: request.text ?? loneMessageAttachmentBody(request),
    html: request.html,
    attachments: request.attachments.map(attachmentOptions),
    headers: request.headers,
    priority: request.priority,
    // The relay only ever sends what the caller put in the JSON: never a local file or a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

/**
 * nodemailer makes a lone attachment the whole message; a lone message/* attachment would then be the
 * message itself, its From and Subject shown as the sender's. An empty text part keeps it an attachment
 * inside multipart/mixed.
 */
function loneMessageAttachmentBody(request: SendRequest): { content: Buffer } | undefined {
  const [only, ...others] = request.attachments;
  const lone = request.html === undefined && others.length === 0 && only !== undefined;
  return lone && /^message\//i.test(only.contentType ?? '') ? { content: Buffer.alloc(0) } : undefined;
}

/** What an address field accepts, for the API description: the same schemas that parse each form. */
const addressInput = z.union([addressString, addressObject]);
const addressListInput = z.union([addressInput, z.array(addressInput).max(maxAddressEntries)]);
const customHeadersInput = z.record(z.string().regex(customHeaderName), z.string().max(2000)).meta({
  description: `X- headers (not X-MS-*, X-Microsoft-*, X-Forefront-*), at most ${maxCustomHeaders}`,
});

/**
 * The send request as JSON Schema (draft 2020-12, OpenAPI 3.1's dialect), generated from the schema that
 * validates requests. Address fields are parsed by dispatching on the input's type (for exact error
 * paths), which JSON Schema cannot see through, so their accepted shapes are filled in from the schemas
 * each branch uses. Cross-field rules (one sender, a recipient, a body) are stated in the description.
 */
export function sendRequestJsonSchema(): Record<string, unknown> {
  const inputShapes = new Map<unknown, z.ZodType>([
    [oneAddress, addressInput],
    [addressList, addressListInput],
    [customHeaders, customHeadersInput],
  ]);
  const { $schema: _dialect, ...schema } = z.toJSONSchema(sendRequestSchema, {
    io: 'input',
    target: 'draft-2020-12',
    override: (context) => {
      const shape = inputShapes.get(context.zodSchema);
      if (shape === undefined) return;
      const { $schema: _shapeDialect, ...shapeSchema } = z.toJSONSchema(shape, { io: 'input' });
      Object.assign(context.jsonSchema, shapeSchema);
    },
  });
  return {
    ...schema,
    description:
      'One sender in from; at least one recipient in to, cc or bcc; and text, html or an attachment. Addresses are "Name <address>" strings (several per string allowed in lists) or {address, name} objects.',
  };
}
