import addressparser from 'nodemailer/lib/addressparser';
import { z } from 'zod';
import { readBodyBytes } from '../api/requestBody.ts';
import { type FieldProblem, invalidRequest, RelayError } from '../errors.ts';
import type {
  CompatibleApi,
  CompatibleHttpRequest,
  CompatibleResponse,
  RelayRefusal,
} from './compatibleApi.ts';
import {
  badRequestStatus,
  oneLine,
  refuseUnsupported,
  type Unsupported,
  zodProblems,
} from './compatibleFields.ts';

/**
 * Mailgun's Send Message (POST /v3/{domain}/messages), as mailgun.js and Mailgun's other SDKs send it: form
 * fields, multipart/form-data with attachments and inline images as file parts, or urlencoded. `{domain}` is
 * the sending domain, so a From in another domain is refused. Answers as Mailgun does: 200
 * `{ id, message: "Queued. Thank you." }`, and errors as `{ message }`, which mailgun.js's APIError exposes
 * as `details` beside the HTTP `status`.
 */
const onceText = z.string({
  error: (issue) => (issue.input === undefined ? 'is required' : 'must be given once, as a text field'),
});
const repeatableText = z.array(z.string({ error: 'must be a text field' }));
const fileParts = z
  .array(
    z.file({ error: 'must be a file part (send the request as multipart/form-data)' }).meta({
      description: 'A file part; its filename and Content-Type are kept',
    }),
  )
  .max(100);
const refusedField = z.unknown().optional().meta({ description: 'Refused with 400 naming the field' });
const noOpOnly = (accepted: string) =>
  z
    .unknown()
    .optional()
    .meta({ description: `Accepted only as ${accepted}; otherwise refused with 400` });

/** The form as its fields: one sent several times is a list, and to, cc, bcc, tags and files are always lists. */
const mailgunMessageSchema = z
  .object({
    from: onceText,
    to: repeatableText
      .optional()
      .meta({ description: 'Repeated fields, each one address or a comma-separated list' }),
    cc: repeatableText.optional(),
    bcc: repeatableText.optional(),
    subject: onceText.optional(),
    text: onceText.optional(),
    html: onceText.optional(),
    attachment: fileParts.optional(),
    inline: fileParts
      .optional()
      .meta({ description: 'Inline images; each is referenced from html as cid:<its filename>' }),
    'o:tag': repeatableText.optional().meta({ description: 'Sent as the X-Mailgun-Tag header' }),
    template: refusedField,
    'amp-html': refusedField,
    'recipient-variables': noOpOnly('{} with one To address'),
    'o:deliverytime': refusedField,
    'o:tracking': noOpOnly('no or false (the relay does not track)'),
    'o:testmode': noOpOnly('no or false (every accepted message is delivered)'),
  })
  .catchall(onceText)
  .meta({
    description:
      'Mailgun form fields. Others: h:Reply-To and h:X-<name> headers, v:<name> variables (the X-Mailgun-Variables header); any other o:, t: or h: field is refused naming it.',
  });

type MailgunMessage = z.infer<typeof mailgunMessageSchema>;
type FormValue = string | File;

/** Fields that may be sent several times, kept as lists even when sent once. */
const repeatable = new Set(['to', 'cc', 'bcc', 'attachment', 'inline', 'o:tag']);
const known = new Set(Object.keys(mailgunMessageSchema.shape));

const template =
  'The relay sends the content it is given; render the template in the app and send html or text.';
const tracking = 'Open and click tracking are Mailgun features the relay does not have.';
const exchangeDecides = 'Exchange Online sends the message; its own settings decide this.';

/** What the relay cannot honour, refused with 400 naming the field (never dropped). */
const unsupported: Unsupported<Record<string, unknown>> = {
  template,
  't:version': template,
  't:text': template,
  't:variables': template,
  'amp-html': 'AMP parts are not supported; send html and text.',
  'recipient-variables':
    'Batch sending (one message per To address) is not supported; send one request per recipient (an empty {} with one To address is accepted).',
  'o:deliverytime':
    'Scheduled sending is not supported; send at the time it should go, or queue it with Prefer: respond-async.',
  'o:deliverytime-optimize-period': 'Send time optimization is a Mailgun feature the relay does not have.',
  'o:time-zone-localize': 'Time zone optimization is a Mailgun feature the relay does not have.',
  'o:testmode': 'The relay has no test mode: every message it accepts is delivered.',
  'o:tracking': tracking,
  'o:tracking-clicks': tracking,
  'o:tracking-opens': tracking,
  'o:tracking-pixel-location-top': tracking,
  'o:dkim': `Exchange Online signs with the domain's DKIM keys when DKIM is enabled for it. ${exchangeDecides}`,
  'o:secondary-dkim': exchangeDecides,
  'o:secondary-dkim-public': exchangeDecides,
  'o:require-tls': exchangeDecides,
  'o:skip-verification': exchangeDecides,
  'o:sending-ip': 'Exchange Online sends from its own addresses; sending IPs do not apply.',
  'o:sending-ip-pool': 'Exchange Online sends from its own addresses; IP pools do not apply.',
  'o:archive-to': 'Archiving copies is a Mailgun feature; add the archive address as bcc instead.',
  'o:suppress-headers': exchangeDecides,
  'o:campaign': 'Campaigns are a Mailgun feature the relay does not have; use o:tag.',
};

/**
 * Options whose value asks for what the relay does anyway, accepted without effect: it never tracks, never
 * drops a message as a test, and Exchange Online tries TLS without requiring it. mailgun.js sends `false`
 * as `no`, and apps often set these explicitly.
 */
const noOpValues: Partial<Record<string, readonly string[]>> = {
  'o:testmode': ['no', 'false'],
  'o:tracking': ['no', 'false'],
  'o:tracking-clicks': ['no', 'false'],
  'o:tracking-opens': ['no', 'false'],
  'o:require-tls': ['no', 'false'],
};

const formContentType = /^(?:multipart\/form-data|application\/x-www-form-urlencoded)\b/i;

/**
 * The body as form data, refused before it is held whole when it is larger than `maxBytes` (not
 * HttpRequest.formData(), which reads a chunked body without bound), then parsed by the platform's own
 * form parser (undici, as formData() would) from the bytes already counted.
 */
async function readForm(request: CompatibleHttpRequest, maxBytes: number): Promise<FormData> {
  const contentType = request.headers.get('content-type') ?? '';
  if (!formContentType.test(contentType)) {
    throw new RelayError('unsupported_media_type', {
      message: `The body must be multipart/form-data or application/x-www-form-urlencoded, as Mailgun's API takes, not ${contentType.slice(0, 100) || 'none'}.`,
    });
  }
  const bytes = await readBodyBytes(request, maxBytes);
  try {
    return await new Response(bytes, { headers: { 'content-type': contentType } }).formData();
  } catch {
    throw invalidRequest([{ field: '(body)', message: `is not valid ${contentType.split(';')[0]}` }]);
  }
}

function formFields(form: FormData): Record<string, FormValue | FormValue[] | undefined> {
  return Object.fromEntries(
    [...new Set(form.keys())].map((name) => {
      const values = form.getAll(name);
      return [name, repeatable.has(name) || values.length > 1 ? values : values[0]];
    }),
  );
}

/** A list field's name for its entry `index`: `to[1]` when the field was sent several times, else `to`. */
function listField(name: string, index: number, count: number): string {
  return count > 1 ? `${name}[${index}]` : name;
}

/** Where each relay field came from in the form, filled in while the form is read. */
interface FieldNames {
  counts: Record<string, number>;
  replyTo: string;
  attachments: string[];
  headers: Map<string, string>;
}

/** The relay's field names back in the form's: `to[1]` -> `to[1]` or `to`, `headers.X-Ticket` -> `h:X-Ticket`. */
function mailgunField(names: FieldNames, field: string): string {
  const match = /^(\w+)(?:\[(\d+)\])?(?:\.(.*))?$/.exec(field);
  const [, head = '', index, rest] = match ?? [];
  if (head === 'to' || head === 'cc' || head === 'bcc')
    return index === undefined ? head : listField(head, Number(index), names.counts[head] ?? 0);
  if (head === 'from') return 'from';
  if (head === 'replyTo') return names.replyTo;
  if (head === 'attachments') return names.attachments[Number(index)] ?? 'attachment';
  if (head === 'headers' && rest !== undefined) return names.headers.get(rest) ?? `h:${rest}`;
  return field;
}

/** Mailgun's `{domain}` is the sending domain: the From's, or (a sending subdomain such as mg.contoso.com) below it. */
function senderDomainProblems(from: string, domain: string): FieldProblem[] {
  const address = addressparser(from, { flatten: true })[0]?.address;
  // An unreadable From is reported by the relay's own validation, which names it.
  if (address === undefined || !address.includes('@')) return [];
  const fromDomain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  const sendingDomain = domain.toLowerCase();
  if (sendingDomain === fromDomain || sendingDomain.endsWith(`.${fromDomain}`)) return [];
  return [
    {
      field: 'from',
      message: `must be an address in ${domain.slice(0, 253)} (or in a domain it is a subdomain of), the sending domain of the URL /v3/${domain.slice(0, 253)}/messages`,
    },
  ];
}

function isNoOp(message: MailgunMessage, field: string): boolean {
  const value = message[field];
  if (field === 'recipient-variables') return isOneMessageBatch(message);
  return typeof value === 'string' && (noOpValues[field]?.includes(value.toLowerCase()) ?? false);
}

/**
 * Some apps always send `recipient-variables: {}` (Mailgun then sends each To address a message of its own);
 * with one To address and no variables, that is one ordinary message.
 */
function isOneMessageBatch(message: MailgunMessage): boolean {
  const variables = message['recipient-variables'];
  if (typeof variables !== 'string' || variables.replace(/\s/g, '') !== '{}') return false;
  const recipients = (message.to ?? []).flatMap((entry) => addressparser(entry, { flatten: true }));
  return recipients.length === 1;
}

/** h:, v:, o: and t: fields, which the schema's catchall lets through as text. */
function prefixedFields(message: MailgunMessage, names: FieldNames) {
  const headers: Record<string, string> = {};
  const variables: Record<string, string> = {};
  const problems: FieldProblem[] = [];
  let replyTo: string | undefined;
  for (const [field, value] of Object.entries(message)) {
    if (known.has(field) || field in unsupported || typeof value !== 'string') continue;
    const header = /^h:(.+)$/i.exec(field)?.[1];
    if (header !== undefined && header.toLowerCase() === 'reply-to') {
      replyTo = value;
      names.replyTo = field;
    } else if (header !== undefined && /^x-/i.test(header)) {
      // Header names are case-insensitive; the relay spells its custom headers X-.
      const name = `X-${header.slice(2)}`;
      headers[name] = value;
      names.headers.set(name, field);
    } else if (header !== undefined) {
      problems.push({
        field,
        message:
          'is not supported: the relay sets only Reply-To (h:Reply-To) and X- headers; it writes the others itself.',
      });
    } else if (field.startsWith('v:') && field.length > 2) {
      variables[field.slice(2)] = value;
    } else if (/^[ot]:/.test(field)) {
      problems.push({ field, message: 'is not supported: the relay does not know this Mailgun option.' });
    } else {
      problems.push({ field, message: 'is not a Mailgun message parameter.' });
    }
  }
  return { headers, variables, replyTo, problems };
}

/**
 * Tags and variables go where Mailgun's own SMTP interface reads them (X-Mailgun-Tag, X-Mailgun-Variables),
 * so a mail rule or a reader still sees them. The relay sets one header per name, so several tags are one
 * comma-separated header.
 */
function metadataHeaders(
  message: MailgunMessage,
  variables: Record<string, string>,
  names: FieldNames,
  custom: Record<string, string>,
): { headers: Record<string, string>; problems: FieldProblem[] } {
  const headers: Record<string, string> = {};
  const fields: Record<string, string> = {};
  const tags = message['o:tag'] ?? [];
  if (tags.length > 0) {
    headers['X-Mailgun-Tag'] = tags.join(', ');
    fields['X-Mailgun-Tag'] = 'o:tag';
  }
  const variableNames = Object.keys(variables);
  if (variableNames.length > 0) {
    headers['X-Mailgun-Variables'] = JSON.stringify(variables);
    fields['X-Mailgun-Variables'] = variableNames.length === 1 ? `v:${variableNames[0]}` : 'v:*';
  }
  const problems: FieldProblem[] = [];
  for (const [name, field] of Object.entries(fields)) {
    const given = Object.keys(custom).find((header) => header.toLowerCase() === name.toLowerCase());
    if (given !== undefined)
      problems.push({
        field: names.headers.get(given) ?? `h:${given}`,
        message: `give either ${field} or h:${name}, not both`,
      });
    names.headers.set(name, field);
  }
  return { headers, problems };
}

/** Files keep their name and type; a type that says only "bytes" is left for the mail library to infer. */
async function attachmentOf(file: File, inline: boolean) {
  const contentType = file.type === '' || file.type === 'application/octet-stream' ? undefined : file.type;
  return {
    filename: file.name,
    content: Buffer.from(await file.arrayBuffer()).toString('base64'),
    ...(contentType === undefined ? {} : { contentType }),
    // Mailgun gives an inline file the content id of its filename (html refers to cid:<filename>).
    ...(inline ? { contentId: file.name } : {}),
  };
}

async function toRelayBody(message: MailgunMessage, domain: string, names: FieldNames): Promise<unknown> {
  const prefixed = prefixedFields(message, names);
  const metadata = metadataHeaders(message, prefixed.variables, names, prefixed.headers);
  const offered = Object.fromEntries(Object.entries(message).filter(([field]) => !isNoOp(message, field)));
  const problems = [
    ...refuseUnsupported(offered, unsupported, ''),
    ...prefixed.problems,
    ...metadata.problems,
    ...senderDomainProblems(message.from, domain),
  ];
  if (problems.length > 0) throw invalidRequest(problems);
  const files = [
    ...(message.attachment ?? []).map((file) => ({ file, inline: false })),
    ...(message.inline ?? []).map((file) => ({ file, inline: true })),
  ];
  const attachments = await Promise.all(files.map(({ file, inline }) => attachmentOf(file, inline)));
  for (const field of ['attachment', 'inline'] as const) {
    const count = message[field]?.length ?? 0;
    for (let index = 0; index < count; index += 1) names.attachments.push(listField(field, index, count));
  }
  return {
    from: message.from,
    ...(message.to === undefined ? {} : { to: message.to }),
    ...(message.cc === undefined ? {} : { cc: message.cc }),
    ...(message.bcc === undefined ? {} : { bcc: message.bcc }),
    ...(prefixed.replyTo === undefined ? {} : { replyTo: prefixed.replyTo }),
    subject: message.subject,
    // Empty bodies are no bodies: mailgun-go sends `text` even when it is empty.
    ...(message.text === undefined || message.text === '' ? {} : { text: message.text }),
    ...(message.html === undefined || message.html === '' ? {} : { html: message.html }),
    ...(attachments.length === 0 ? {} : { attachments }),
    headers: { ...prefixed.headers, ...metadata.headers },
  };
}

const errorSchema = z.object({
  message: z.string().meta({
    description:
      'What is wrong, each field at fault by its Mailgun name (e.g. "from: must be an address in ..."), then what to do',
  }),
});

/** Mailgun answers a bad key with "Forbidden"; the relay's text then says where the key goes. */
function mailgunMessage(refusal: RelayRefusal): string {
  return `${refusal.status === 401 ? 'Forbidden: ' : ''}${oneLine(refusal)}`;
}

export const mailgunApi: CompatibleApi = {
  async read(request, maxBodyBytes) {
    const form = await readForm(request, maxBodyBytes);
    const parsed = mailgunMessageSchema.safeParse(formFields(form));
    if (!parsed.success) throw invalidRequest(zodProblems(parsed.error));
    const message = parsed.data;
    const names: FieldNames = {
      counts: { to: message.to?.length ?? 0, cc: message.cc?.length ?? 0, bcc: message.bcc?.length ?? 0 },
      replyTo: 'h:Reply-To',
      attachments: [],
      headers: new Map(),
    };
    const body = await toRelayBody(message, request.params.domain ?? '', names);
    return { bodies: [body], fieldOf: (_index, field) => mailgunField(names, field) };
  },
  accepted(responses): CompatibleResponse {
    // Mailgun's id is the Message-ID with its angle brackets, as the relay reports it.
    const messageId = (responses[0]?.body as { messageId?: string } | undefined)?.messageId ?? '';
    return { status: 200, jsonBody: { id: messageId, message: 'Queued. Thank you.' } };
  },
  refused(refusal): CompatibleResponse {
    return { status: badRequestStatus(refusal), jsonBody: { message: mailgunMessage(refusal) } };
  },
  request: {
    contentTypes: ['multipart/form-data', 'application/x-www-form-urlencoded'],
    schema: mailgunMessageSchema,
  },
  errorSchema,
};
