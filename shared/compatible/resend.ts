import { z } from 'zod';
import { readJsonBody } from '../api/requestBody.ts';
import type { ErrorCode } from '../errorCodes.ts';
import { type FieldProblem, invalidRequest } from '../errors.ts';
import { formatFieldPath } from '../message.ts';
import type { CompatibleApi, CompatibleResponse, RelayRefusal } from './compatibleApi.ts';
import { oneLine, refuseUnsupported, type Unsupported } from './compatibleFields.ts';

/**
 * Resend's Send Email (POST /emails), as the resend SDKs put it on the wire: snake case (reply_to,
 * content_type, scheduled_at), one message per request. Answers as Resend does: 200 `{ id }`, and errors
 * as `{ statusCode, name, message }`, which the Node SDK resolves as `{ data: null, error }` with that
 * body, and the Python SDK raises by statusCode and name (only for an application/json answer).
 */
const addresses = z.union([z.string(), z.array(z.string())]);
// The Go SDK writes a list it was not given as null.
const optionalAddresses = addresses.nullable().optional();

const byte = z.int().min(0).max(255);

// The Node SDK sends base64; the Go SDK a []byte as a list of numbers, as Python users send list(file.read());
// older Node SDKs a Buffer as JSON.stringify writes it.
const attachmentContent = z.union([
  z.string().meta({ description: 'The bytes in base64' }),
  z.array(byte).meta({ description: 'The bytes as numbers' }),
  z.strictObject({ type: z.literal('Buffer'), data: z.array(byte) }).meta({
    description: 'A Node Buffer as JSON.stringify writes it',
  }),
]);

const attachment = z.strictObject({
  content: attachmentContent.optional(),
  filename: z.string().optional(),
  path: z.string().optional().meta({ description: 'Refused: the relay does not fetch attachments' }),
  content_type: z.string().optional(),
  content_id: z.string().optional(),
  inline_content_id: z.string().optional().meta({ description: 'The older name of content_id' }),
});

// Resend: "only ASCII letters (a–z, A–Z), numbers (0–9), underscores (_), or dashes (-)", at most 256.
const tagText = z.string().regex(/^[A-Za-z0-9_-]{1,256}$/, 'must be 1 to 256 ASCII letters, digits, _ or -');

const sendEmailSchema = z.strictObject({
  from: z.string().meta({ description: 'The sender, "Name <address>" or an address' }),
  to: addresses,
  subject: z.string(),
  cc: optionalAddresses,
  bcc: optionalAddresses,
  reply_to: optionalAddresses,
  html: z.string().optional(),
  text: z.string().optional(),
  headers: z
    .record(z.string(), z.union([z.string(), z.array(z.string())]))
    .optional()
    .meta({ description: 'X- headers only; a list of values (as anymail sends X-Tag) becomes one header' }),
  attachments: z.array(attachment).optional(),
  tags: z
    .array(z.strictObject({ name: tagText, value: tagText }))
    .optional()
    .meta({ description: 'Sent as one X-Tags header: name=value, name=value' }),
  template: z.unknown().optional().meta({ description: 'Refused' }),
  scheduled_at: z.unknown().optional().meta({ description: 'Refused' }),
  topic_id: z.unknown().optional().meta({ description: 'Refused' }),
  react: z.unknown().optional().meta({ description: 'Refused (the Node SDK renders it into html)' }),
  region: z.unknown().optional().meta({ description: 'Refused' }),
});

type SendEmail = z.infer<typeof sendEmailSchema>;
type Attachment = z.infer<typeof attachment>;

/**
 * What the relay cannot honour, refused naming the field (never dropped). A request's problems share one
 * message, separated by "; ", so no reason holds a semicolon.
 */
const unsupported: Unsupported<SendEmail> = {
  template:
    'the relay sends the content it is given, so render the template in the app and send html or text.',
  scheduled_at:
    'the relay sends at once, so send at the time it should go, or queue it now with Prefer: respond-async.',
  topic_id:
    "topics (recipients' subscription preferences) are Resend's, so check the preference in the app before sending.",
  react: 'only the Node SDK renders React (into html, before it sends), so send html.',
  region: 'Exchange Online sends from its own datacenters, so a sending region does not apply.',
};

const attachmentByPath =
  'the relay does not fetch attachments from URLs, so download the file and send its bytes as content.';

/** Resend's wire names for the SDKs' camel-case ones, to say what to send instead of an unknown field. */
const wireNames: Record<string, string> = {
  replyTo: 'reply_to',
  scheduledAt: 'scheduled_at',
  topicId: 'topic_id',
  contentType: 'content_type',
  contentId: 'content_id',
};

const missing = 'is missing';
const tagsHeader = 'X-Tags';

/** Resend's "Missing `from` field" for the required fields, the rest as zod found them. */
function schemaProblems(body: unknown, error: z.ZodError): FieldProblem[] {
  const given = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  return error.issues.flatMap((issue): FieldProblem[] => {
    const field = formatFieldPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => {
        const wireName = wireNames[key];
        const hint = wireName === undefined ? '' : ` (send it as ${wireName}, as the resend SDKs do)`;
        return {
          field: field === '(body)' ? key : `${field}.${key}`,
          message: `is not a field of Resend's send email request${hint}`,
        };
      });
    }
    const [top] = issue.path;
    if (issue.path.length === 1 && typeof top === 'string' && given[top] === undefined)
      return [{ field, message: missing }];
    return [{ field, message: issue.message }];
  });
}

function base64Of(content: NonNullable<Attachment['content']>): string {
  if (typeof content === 'string') return content;
  return Buffer.from(Array.isArray(content) ? content : content.data).toString('base64');
}

function relayAttachments(email: SendEmail): { attachments: unknown[]; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const attachments = (email.attachments ?? []).map((file, index) => {
    const field = `attachments[${index}]`;
    if (file.path !== undefined)
      problems.push({ field: `${field}.path`, message: `is not supported: ${attachmentByPath}` });
    else if (file.content === undefined) problems.push({ field: `${field}.content`, message: missing });
    if (
      file.content_id !== undefined &&
      file.inline_content_id !== undefined &&
      file.content_id !== file.inline_content_id
    )
      problems.push({
        field: `${field}.inline_content_id`,
        message: 'differs from content_id, so give only one',
      });
    const contentId = file.content_id ?? file.inline_content_id;
    return {
      filename: file.filename,
      content: file.content === undefined ? '' : base64Of(file.content),
      ...(file.content_type === undefined ? {} : { contentType: file.content_type }),
      ...(contentId === undefined ? {} : { contentId }),
    };
  });
  return { attachments, problems };
}

/** Custom headers, with a list of values as one header, and the tags as X-Tags, where mail rules see them. */
function relayHeaders(email: SendEmail): { headers: Record<string, string>; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(email.headers ?? {})) {
    if (Array.isArray(value) && value.length === 0)
      problems.push({ field: `headers.${name}`, message: 'must hold at least one value' });
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const tags = email.tags ?? [];
  if (tags.length === 0) return { headers, problems };
  const seen = new Set<string>();
  for (const [index, tag] of tags.entries()) {
    if (seen.has(tag.name)) problems.push({ field: `tags[${index}].name`, message: 'appears twice' });
    seen.add(tag.name);
  }
  if (Object.keys(headers).some((name) => name.toLowerCase() === tagsHeader.toLowerCase()))
    problems.push({
      field: 'tags',
      message: `would replace headers.${tagsHeader}, so give only one of the two`,
    });
  headers[tagsHeader] = tags.map((tag) => `${tag.name}=${tag.value}`).join(', ');
  return { headers, problems };
}

function toRelayBody(email: SendEmail): unknown {
  const attachments = relayAttachments(email);
  const headers = relayHeaders(email);
  const problems = [
    ...refuseUnsupported(email, unsupported, ''),
    ...attachments.problems,
    ...headers.problems,
  ];
  if (problems.length > 0) throw invalidRequest(problems);
  // Resend sends no text part when text is "" (it would otherwise make one from the html).
  const text = email.text === '' && email.html !== undefined ? undefined : email.text;
  return {
    from: email.from,
    to: email.to,
    ...(email.cc == null ? {} : { cc: email.cc }),
    ...(email.bcc == null ? {} : { bcc: email.bcc }),
    ...(email.reply_to == null ? {} : { replyTo: email.reply_to }),
    subject: email.subject,
    ...(text === undefined ? {} : { text }),
    ...(email.html === undefined ? {} : { html: email.html }),
    ...(attachments.attachments.length === 0 ? {} : { attachments: attachments.attachments }),
    ...(Object.keys(headers.headers).length === 0 ? {} : { headers: headers.headers }),
  };
}

/** What naming a field needs of the request: which spelling each attachment's id came in, and whether it had tags. */
interface ResendShape {
  inlineContentIdAt: ReadonlySet<number>;
  tags: boolean;
}

function shapeOf(email: SendEmail): ResendShape {
  const inlineContentIdAt = new Set<number>();
  for (const [index, file] of (email.attachments ?? []).entries())
    if (file.content_id === undefined && file.inline_content_id !== undefined) inlineContentIdAt.add(index);
  return { inlineContentIdAt, tags: email.tags !== undefined };
}

/** The relay's field names back in the request's: `replyTo[1]` -> `reply_to[1]`, `headers.X-Tags` -> `tags`. */
function resendField(shape: ResendShape, field: string): string {
  const [head = '', ...rest] = field.split('.');
  const tail = rest.join('.');
  if (head.startsWith('replyTo')) return `reply_to${field.slice('replyTo'.length)}`;
  const attachmentField = /^attachments\[(\d+)\]$/.exec(head);
  if (attachmentField !== null) {
    const names: Record<string, string> = {
      contentType: 'content_type',
      contentId: shape.inlineContentIdAt.has(Number(attachmentField[1])) ? 'inline_content_id' : 'content_id',
    };
    return tail === '' ? head : `${head}.${names[tail] ?? tail}`;
  }
  if (field === `headers.${tagsHeader}` && shape.tags) return 'tags';
  return field;
}

const errorSchema = z.object({
  statusCode: z
    .int()
    .meta({ description: 'The HTTP status, repeated: the resend SDKs read it from the body' }),
  name: z.string().meta({
    description: "Resend's error name, e.g. validation_error, missing_api_key, invalid_api_key",
  }),
  message: z.string().meta({
    description: 'The problems, each naming its field (e.g. to[1]), what to do, and the relay error code',
  }),
});

interface ResendError {
  statusCode: number;
  name: string;
}

/** Resend's names and statuses (resend.com/docs/api-reference/errors) for the relay's errors. */
const resendErrors: Partial<Record<ErrorCode, ResendError>> = {
  caller_key_missing: { statusCode: 401, name: 'missing_api_key' },
  caller_key_invalid: { statusCode: 403, name: 'invalid_api_key' },
  // No key can match when the relay has none; the message says so.
  no_callers_configured: { statusCode: 403, name: 'invalid_api_key' },
  // As Resend answers a From in a domain the account has not verified.
  sender_not_allowed: { statusCode: 403, name: 'validation_error' },
  invalid_request: { statusCode: 422, name: 'validation_error' },
  too_many_recipients: { statusCode: 422, name: 'validation_error' },
  recipients_rejected: { statusCode: 422, name: 'validation_error' },
  invalid_json: { statusCode: 400, name: 'validation_error' },
  invalid_idempotency_key: { statusCode: 400, name: 'invalid_idempotency_key' },
  idempotency_key_reused: { statusCode: 409, name: 'invalid_idempotent_request' },
  idempotency_request_in_progress: { statusCode: 409, name: 'concurrent_idempotent_requests' },
  recipient_quota_exceeded: { statusCode: 429, name: 'daily_quota_exceeded' },
  internal_error: { statusCode: 500, name: 'internal_server_error' },
};

function resendErrorOf(refusal: RelayRefusal): ResendError {
  const code = refusal.error.code as ErrorCode;
  const known = resendErrors[code];
  if (code === 'invalid_request' && Array.isArray(refusal.error.details)) {
    const allMissing = refusal.error.details.every((problem) => problem.message === missing);
    if (allMissing) return { statusCode: 422, name: 'missing_required_field' };
  }
  if (known !== undefined) return known;
  if (refusal.status === 429) return { statusCode: 429, name: 'rate_limit_exceeded' };
  if (refusal.status >= 500) return { statusCode: refusal.status, name: 'application_error' };
  return { statusCode: refusal.status, name: 'validation_error' };
}

export const resendApi: CompatibleApi = {
  async read(request, maxBodyBytes) {
    const body = await readJsonBody(request, maxBodyBytes);
    const parsed = sendEmailSchema.safeParse(body);
    if (!parsed.success) throw invalidRequest(schemaProblems(body, parsed.error));
    const email = parsed.data;
    const shape = shapeOf(email);
    return { bodies: [toRelayBody(email)], fieldOf: (_index, field) => resendField(shape, field) };
  },
  accepted(responses): CompatibleResponse {
    const [response] = responses;
    // A queued send (Prefer: respond-async) answers with its queue id, the one GET /api/send/{id} takes
    // (its Message-ID is <id@sender domain>); a sent one with its Message-ID without the angle brackets.
    const body = response?.body as { id?: string; messageId?: string } | undefined;
    const id = response?.status === 202 ? body?.id : body?.messageId?.replace(/^<|>$/g, '');
    return { status: 200, headers: { ...response?.headers }, jsonBody: { id: id ?? '' } };
  },
  refused(refusal): CompatibleResponse {
    const { statusCode, name } = resendErrorOf(refusal);
    return {
      status: statusCode,
      jsonBody: { statusCode, name, message: oneLine(refusal) },
    };
  },
  request: { contentTypes: ['application/json'], schema: sendEmailSchema },
  errorSchema,
  // Resend's keys start with re_ (its SDK's own message says `new Resend("re_123")`); the SDK does not
  // check, but apps that validate their configuration may.
  keyPrefix: 're_',
};
