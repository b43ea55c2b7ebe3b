import type { SendMailOptions } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { z } from 'zod';
import { type FieldProblem, invalidRequest, RelayError } from './errors.ts';
import { mailAddressPattern } from './mailAddress.ts';

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

// C0 controls and DEL; a header value that holds one could end the header or smuggle another.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const headerUnsafe = /[\u0000-\u0008\u000a-\u001f\u007f]/;
// Bodies may hold line breaks and tabs, but NUL and the other controls are not text.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const bodyUnsafe = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
// A UTF-16 surrogate without its pair is no character at all: encoded as UTF-8 it would reach the recipient
// as U+FFFD, a different message than the one asked for, so it is refused instead.
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const notUnicode = 'must be valid Unicode text (it holds an unpaired UTF-16 surrogate)';

const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => !headerUnsafe.test(value), 'must not contain CR, LF or other control characters')
    .refine((value) => !loneSurrogate.test(value), notUnicode);

const addressObject = z.strictObject({
  address: headerText(320).refine((value) => mailAddressPattern.test(value), 'must be an email address'),
  name: headerText(200).optional(),
});

/** A string may carry one or several `Name <address>` entries, as mail clients write them. */
const addressString = headerText(20_000).transform((value, ctx): MailAddress[] => {
  const parsed = addressparser(value, { flatten: true });
  const mailboxes: MailAddress[] = [];
  for (const entry of parsed) {
    if (entry.address === undefined || !mailAddressPattern.test(entry.address)) {
      ctx.addIssue({ code: 'custom', message: `"${value.slice(0, 100)}" is not a valid address` });
      return z.NEVER;
    }
    mailboxes.push({ name: entry.name, address: entry.address });
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

const addressList = z.unknown().transform((value, ctx) => {
  if (!Array.isArray(value)) return parseOneAddress(value, ctx);
  if (value.length > 1000) {
    ctx.addIssue({ code: 'custom', message: 'at most 1000 entries' });
    return z.NEVER;
  }
  const entries = parseWith(z.array(oneAddress), value, ctx);
  return entries === z.NEVER ? z.NEVER : entries.flat();
});

function toMailAddress(entry: { address: string; name?: string | undefined }): MailAddress {
  return { name: entry.name ?? '', address: entry.address };
}

// Attachments are the bulk of a request, so this runs over megabyte-sized strings: unwrapped base64 (the
// common case) is not copied just to strip line breaks it does not have, and validation rides on the one
// decoding pass. Node's decoder skips characters outside the alphabet, so any such character (or padding
// inside the text) yields fewer bytes than the length promises; a regular expression over the whole
// string cost ~10 ms per megabyte. The URL-safe alphabet (- and _) decodes to the bytes the caller meant.
const base64Whitespace = /[\r\n\t ]/;

const base64Content = z.string().transform((value, ctx) => {
  const compact = base64Whitespace.test(value) ? value.replace(/[\r\n\t ]/g, '') : value;
  const padding = compact.endsWith('==') ? 2 : compact.endsWith('=') ? 1 : 0;
  const decoded = Buffer.from(compact, 'base64');
  if (compact.length % 4 !== 0 || decoded.length !== (compact.length / 4) * 3 - padding) {
    ctx.addIssue({ code: 'custom', message: 'must be base64' });
    return z.NEVER;
  }
  return decoded;
});

const attachment = z.strictObject({
  filename: headerText(255).min(1),
  contentType: headerText(200)
    .regex(/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/, 'must be a MIME type such as application/pdf')
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

const sendRequestSchema = z
  .strictObject({
    from: oneAddress,
    to: addressList.optional(),
    cc: addressList.optional(),
    bcc: addressList.optional(),
    replyTo: addressList.optional(),
    subject: headerText(10_000),
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
    headers: z.record(z.string().regex(customHeaderName, customHeaderRule), headerText(2000)).optional(),
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

export function recipientCount(request: SendRequest): number {
  return request.to.length + request.cc.length + request.bcc.length;
}

/**
 * An upper estimate of the encoded size: base64 grows attachments by 4/3 plus line breaks, and
 * quoted-printable or base64 bodies grow by at most the same. Exchange counts the encoded size.
 */
export function estimateEncodedBytes(request: SendRequest): number {
  const base64Growth = (bytes: number) => Math.ceil(bytes / 57) * 78;
  let total = 4096;
  if (request.text !== undefined) total += base64Growth(Buffer.byteLength(request.text));
  if (request.html !== undefined) total += base64Growth(Buffer.byteLength(request.html));
  for (const file of request.attachments) total += base64Growth(file.content.length) + 512;
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
  return request.from.address.toLowerCase();
}

export function toMailOptions(request: SendRequest): SendMailOptions {
  return {
    from: request.from,
    to: request.to,
    cc: request.cc,
    bcc: request.bcc,
    replyTo: request.replyTo.length > 0 ? request.replyTo : undefined,
    subject: request.subject,
    text: request.text,
    html: request.html,
    attachments: request.attachments.map((file) => ({
      filename: file.filename,
      content: file.content,
      contentType: file.contentType,
      cid: file.contentId,
    })),
    headers: request.headers,
    priority: request.priority,
    // The relay only ever sends what the caller put in the JSON: never a local file or a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}

/** What an address field accepts, for the API description: the same schemas that parse each form. */
const addressInput = z.union([addressString, addressObject]);
const addressListInput = z.union([addressInput, z.array(addressInput).max(1000)]);

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
