import { z } from 'zod';
import { readJsonBody } from '../api/requestBody.ts';
import { errorCodes, isErrorCode } from '../errorCodes.ts';
import { type FieldProblem, invalidRequest } from '../errors.ts';
import { customHeaderName, customHeaderRule, formatFieldPath } from '../message.ts';
import type { CompatibleApi, CompatibleResponse, RelayRefusal } from './compatibleApi.ts';
import { oneLine, refuseUnsupported } from './compatibleFields.ts';

/**
 * Postmark's Send Email (POST /email at the server's root, since Postmark's SDKs take only a host), as the
 * `postmark` npm client and Postmark's other SDKs send it: Pascal-case fields, addresses as
 * `"Name <address>"` strings (comma-separated lists), headers as `[{ Name, Value }]`. Answers as Postmark
 * does: 200 `{ To, SubmittedAt, MessageID, ErrorCode: 0, Message }`, and errors as `{ ErrorCode, Message }`
 * with the HTTP status from which the SDK picks its error class (node_modules/postmark/dist/client/errors/
 * ErrorHandler.js: 401 InvalidAPIKeyError, 422 + 300 InvalidEmailRequestError, 429 RateLimitExceededError,
 * 500 InternalServerError, 503 ServiceUnavailablerError).
 */
const header = z.strictObject({ Name: z.string(), Value: z.string() });

const attachment = z.strictObject({
  Name: z.string(),
  Content: z.string().meta({ description: 'base64' }),
  ContentType: z.string().nullish(),
  ContentID: z
    .string()
    .nullish()
    .meta({ description: 'Makes the attachment inline: "cid:chart.png", referred to from HtmlBody' }),
  ContentLength: z.number().nullish(),
  Disposition: z.enum(['attachment', 'inline']).nullish(),
});

// Metadata travels as X-PM-Metadata-<key> headers (Postmark's own SMTP convention), so a key must make a
// header name the relay sends (shared/message.ts).
const metadataHeaderPrefix = 'X-PM-Metadata-';
const metadataKey = z
  .string()
  .refine(
    (key) => customHeaderName.test(`${metadataHeaderPrefix}${key}`),
    `is sent as the ${metadataHeaderPrefix}<key> header: ${customHeaderRule}`,
  );

const emailSchema = z.strictObject({
  From: z.string().meta({ description: '"Name <address>"' }),
  To: z.string().nullish().meta({ description: 'Comma-separated "Name <address>" list' }),
  Cc: z.string().nullish(),
  Bcc: z.string().nullish(),
  ReplyTo: z.string().nullish(),
  Subject: z.string().nullish(),
  HtmlBody: z.string().nullish(),
  TextBody: z.string().nullish(),
  Tag: z.string().max(1000).nullish().meta({ description: 'Sent as the X-PM-Tag header' }),
  Headers: z.array(header).nullish().meta({ description: 'X- headers only' }),
  Metadata: z
    .record(metadataKey, z.union([z.string(), z.number()]))
    .nullish()
    .meta({ description: 'Each entry sent as an X-PM-Metadata-<key> header' }),
  Attachments: z.array(attachment).nullish(),
  TrackOpens: z.boolean().nullish().meta({ description: 'Only false: the relay does not track' }),
  TrackLinks: z
    .enum(['None', 'HtmlAndText', 'HtmlOnly', 'TextOnly'])
    .nullish()
    .meta({ description: 'Only None: the relay does not track' }),
  MessageStream: z.string().nullish().meta({ description: 'Only outbound' }),
  TemplateId: z.unknown().optional().meta({ description: 'Refused' }),
  TemplateAlias: z.unknown().optional().meta({ description: 'Refused' }),
  TemplateModel: z.unknown().optional().meta({ description: 'Refused' }),
  InlineCss: z.unknown().optional().meta({ description: 'Refused' }),
});

type Email = z.infer<typeof emailSchema>;

const template =
  'The relay sends the content it is given; render the template in the app and send HtmlBody or TextBody.';

type RefusedField =
  | 'TrackOpens'
  | 'TrackLinks'
  | 'MessageStream'
  | 'TemplateId'
  | 'TemplateAlias'
  | 'TemplateModel'
  | 'InlineCss';

/** What the relay cannot honour, refused with ErrorCode 300 naming the field (never dropped). */
const unsupported: Record<RefusedField, string> = {
  TrackOpens: 'Open tracking is a Postmark feature the relay does not have; omit it or send false.',
  TrackLinks: 'Link tracking is a Postmark feature the relay does not have; omit it or send None.',
  MessageStream:
    'Message streams are Postmark features; the relay sends every message alike. Omit it or send outbound.',
  TemplateId: template,
  TemplateAlias: template,
  TemplateModel: template,
  InlineCss: template,
};

/** The fields of `mail` that ask for something the relay cannot do (`TrackOpens: false` asks for nothing). */
function featuresAskedFor(mail: Email): Partial<Record<RefusedField, unknown>> {
  const harmless: Partial<Record<RefusedField, unknown>> = {
    TrackOpens: false,
    TrackLinks: 'None',
    MessageStream: 'outbound',
  };
  const asked: Partial<Record<RefusedField, unknown>> = {};
  for (const field of Object.keys(unsupported) as RefusedField[]) {
    const value = mail[field];
    if (value !== undefined && value !== null && value !== harmless[field]) asked[field] = value;
  }
  return asked;
}

/** SDKs that serialise every property send null or "" for what was not set: both mean absent. */
function given(value: string | null | undefined): string | undefined {
  return value === null || value === undefined || value.trim() === '' ? undefined : value;
}

/** `value`'s keys spelled as in `shape` where they differ only in case; others are left for the schema to refuse. */
function canonicalKeys(value: unknown, shape: Record<string, unknown>): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const names = new Map(Object.keys(shape).map((name) => [name.toLowerCase(), name]));
  const entries = Object.entries(value);
  const present = new Set(entries.map(([key]) => key));
  return Object.fromEntries(
    entries.map(([key, entry]) => {
      const name = names.get(key.toLowerCase());
      return [name === undefined || present.has(name) ? key : name, entry];
    }),
  );
}

/**
 * Postmark reads field names regardless of case, and its own .NET SDK writes an attachment's `ContentId`
 * (ActiveCampaign/postmark-dotnet, PostmarkMessageAttachment.cs), so names are matched the same way.
 */
function withPostmarkNames(body: unknown): unknown {
  const email = canonicalKeys(body, emailSchema.shape);
  if (typeof email !== 'object' || email === null || Array.isArray(email)) return email;
  const { Attachments: attachments, Headers: headers } = email as Record<string, unknown>;
  return {
    ...email,
    ...(Array.isArray(attachments)
      ? { Attachments: attachments.map((file) => canonicalKeys(file, attachment.shape)) }
      : {}),
    ...(Array.isArray(headers)
      ? { Headers: headers.map((entry) => canonicalKeys(entry, header.shape)) }
      : {}),
  };
}

/** Zod's problems in Postmark's field names, one per unknown field and with the reason for a bad key. */
function schemaProblems(error: z.ZodError): FieldProblem[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys')
      return issue.keys.map((key) => ({
        field: formatFieldPath([...issue.path, key]),
        message: 'is not a field of Postmark’s /email request',
      }));
    const message =
      issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message;
    return [{ field: formatFieldPath(issue.path), message }];
  });
}

interface RelayHeaders {
  headers: Record<string, string>;
  /** Where each header came from in the request: `Headers[1]`, `Tag` or `Metadata.order`. */
  fieldOfHeader: Map<string, string>;
  problems: FieldProblem[];
}

/** Headers, Tag and Metadata as X- headers, under the names Postmark itself reads over SMTP. */
function relayHeaders(mail: Email): RelayHeaders {
  const result: RelayHeaders = { headers: {}, fieldOfHeader: new Map(), problems: [] };
  const seen = new Map<string, string>();
  const add = (name: string, value: string, field: string, nameField: string) => {
    const earlier = seen.get(name.toLowerCase());
    if (earlier !== undefined) {
      result.problems.push({ field: nameField, message: `sets ${name} again (already set by ${earlier})` });
      return;
    }
    seen.set(name.toLowerCase(), field);
    result.headers[name] = value;
    result.fieldOfHeader.set(name, field);
  };
  for (const [index, entry] of (mail.Headers ?? []).entries()) {
    // Header names are case-insensitive (RFC 5322 section 1.2.2); the relay spells the prefix X-.
    const name = entry.Name.replace(/^x-/, 'X-');
    const field = `Headers[${index}]`;
    if (!customHeaderName.test(name)) {
      result.problems.push({
        field: `${field}.Name`,
        message: customHeaderRule,
      });
      continue;
    }
    add(name, entry.Value, `${field}.Value`, `${field}.Name`);
  }
  const tag = given(mail.Tag);
  if (tag !== undefined) add('X-PM-Tag', tag, 'Tag', 'Tag');
  for (const [key, value] of Object.entries(mail.Metadata ?? {}))
    add(`${metadataHeaderPrefix}${key}`, String(value), `Metadata.${key}`, `Metadata.${key}`);
  return result;
}

function attachmentProblems(mail: Email): FieldProblem[] {
  return (mail.Attachments ?? []).flatMap((file, index) => {
    const inline = given(file.ContentID) !== undefined;
    if (file.Disposition === 'inline' && !inline)
      return [
        { field: `Attachments[${index}].ContentID`, message: 'an inline attachment needs a ContentID' },
      ];
    if (file.Disposition === 'attachment' && inline)
      return [
        {
          field: `Attachments[${index}].Disposition`,
          message: 'an attachment with a ContentID is inline; drop the ContentID or the Disposition',
        },
      ];
    return [];
  });
}

/** Postmark requires a body and a recipient; said here in its field names rather than the relay's. */
function presenceProblems(mail: Email): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if ([mail.To, mail.Cc, mail.Bcc].every((list) => given(list) === undefined))
    problems.push({ field: 'To', message: 'give at least one recipient in To, Cc or Bcc' });
  if (given(mail.TextBody) === undefined && given(mail.HtmlBody) === undefined)
    problems.push({ field: 'TextBody', message: 'give TextBody, HtmlBody or both' });
  return problems;
}

function relayAttachments(mail: Email) {
  return (mail.Attachments ?? []).map((file) => {
    const contentId = given(file.ContentID)?.replace(/^cid:/i, '');
    return {
      filename: file.Name,
      content: file.Content,
      ...(given(file.ContentType) === undefined ? {} : { contentType: file.ContentType }),
      ...(contentId === undefined ? {} : { contentId }),
    };
  });
}

const relayFieldNames: Record<string, string> = {
  from: 'From',
  to: 'To',
  cc: 'Cc',
  bcc: 'Bcc',
  replyTo: 'ReplyTo',
  subject: 'Subject',
  text: 'TextBody',
  html: 'HtmlBody',
};

const attachmentFieldNames: Record<string, string> = {
  filename: 'Name',
  content: 'Content',
  contentType: 'ContentType',
  contentId: 'ContentID',
};

/** The relay's field names back in the request's: `attachments[0].contentId` -> `Attachments[0].ContentID`. */
function postmarkField(field: string, fieldOfHeader: Map<string, string>): string {
  if (field.startsWith('headers.')) return fieldOfHeader.get(field.slice('headers.'.length)) ?? 'Headers';
  const [head = '', ...rest] = field.split('.');
  const attachmentHead = /^attachments(\[\d+\])?$/.exec(head);
  if (attachmentHead !== null) {
    const property = rest.join('.');
    const name = attachmentFieldNames[property] ?? property;
    return `Attachments${attachmentHead[1] ?? ''}${name === '' ? '' : `.${name}`}`;
  }
  // Addresses are passed on as the request's strings, so a problem in one names the whole field.
  return relayFieldNames[head.replace(/\[\d+\]$/, '')] ?? field;
}

function toRelayBody(mail: Email, headers: Record<string, string>): Record<string, unknown> {
  const optional = (name: string, value: string | null | undefined) => {
    const present = given(value);
    return present === undefined ? {} : { [name]: present };
  };
  const attachments = relayAttachments(mail);
  return {
    from: mail.From,
    ...optional('to', mail.To),
    ...optional('cc', mail.Cc),
    ...optional('bcc', mail.Bcc),
    ...optional('replyTo', mail.ReplyTo),
    subject: mail.Subject ?? '',
    ...optional('text', mail.TextBody),
    ...optional('html', mail.HtmlBody),
    ...(attachments.length === 0 ? {} : { attachments }),
    ...(Object.keys(headers).length === 0 ? {} : { headers }),
  };
}

const errorSchema = z.object({
  ErrorCode: z.number().int().meta({
    description:
      '10 bad or missing server token, 300 invalid request, 400 sender not allowed, 402 invalid JSON, 409 JSON required, 429 rate limited, 500 relay or Exchange failure',
  }),
  Message: z.string().meta({ description: 'The problems, each naming its field, then what to do' }),
});

interface PostmarkAnswer {
  status: number;
  errorCode: number;
}

/**
 * Postmark's status and ErrorCode for a relay refusal. Postmark answers request problems with 422 and an
 * API error code, a bad token with 401, and its own failures with 5xx; the SDK chooses its error class by
 * the status (and, under 422, by the code).
 */
function postmarkAnswer(refusal: RelayRefusal): PostmarkAnswer {
  const code = refusal.error.code;
  if (refusal.status === 401) return { status: 401, errorCode: 10 };
  // 400: "Sender signature not found", Postmark's answer for a From its server may not use.
  if (code === 'sender_not_allowed' || code === 'caller_removed') return { status: 422, errorCode: 400 };
  if (code === 'invalid_json') return { status: 422, errorCode: 402 };
  if (code === 'unsupported_media_type') return { status: 422, errorCode: 409 };
  // Postmark answers a request over its size limit with HTTP 413.
  if (code === 'request_too_large' || code === 'message_too_large') return { status: 413, errorCode: 300 };
  if (refusal.status === 429) return { status: 429, errorCode: 429 };
  const area = isErrorCode(code) ? errorCodes[code].area : 'internal';
  if (refusal.status >= 500 || !['request', 'caller', 'smtp'].includes(area))
    return { status: refusal.status === 503 ? 503 : 500, errorCode: 500 };
  return { status: 422, errorCode: 300 };
}

/**
 * One line, each problem led by its field (`To: "x" is not a valid address`), then what to do. Never led by
 * "Invalid 'To'": django-anymail reads such a 300 as Postmark's per-recipient refusal and, finding no
 * address in Postmark's wording there, would raise nothing (anymail/backends/postmark.py).
 */
interface SentBody {
  messageId?: string;
}

export const postmarkApi: CompatibleApi = {
  async read(request, maxBodyBytes) {
    const body = await readJsonBody(request, maxBodyBytes);
    const parsed = emailSchema.safeParse(withPostmarkNames(body));
    if (!parsed.success) throw invalidRequest(schemaProblems(parsed.error));
    const mail = parsed.data;
    const headers = relayHeaders(mail);
    const problems = [
      ...refuseUnsupported(featuresAskedFor(mail), unsupported, ''),
      ...presenceProblems(mail),
      ...headers.problems,
      ...attachmentProblems(mail),
    ];
    if (problems.length > 0) throw invalidRequest(problems);
    return {
      bodies: [toRelayBody(mail, headers.headers)],
      fieldOf: (_index, field) =>
        field === '(message)' ? field : postmarkField(field, headers.fieldOfHeader),
      ...(mail.To === undefined || mail.To === null ? {} : { echo: { To: mail.To } }),
    };
  },
  accepted(responses, echo): CompatibleResponse {
    const [response] = responses;
    const sent = (response?.body ?? {}) as SentBody;
    // Postmark echoes the request's To (a message sent only to Cc or Bcc has none).
    const to = echo?.To === undefined ? {} : { To: echo.To };
    return {
      status: 200,
      jsonBody: {
        ...to,
        SubmittedAt: new Date().toISOString(),
        MessageID: (sent.messageId ?? '').replace(/^<|>$/g, ''),
        ErrorCode: 0,
        // Postmark's words for a message it accepted but has not sent yet (a queued send here).
        Message: response?.status === 202 ? 'Message accepted, but delivery may be delayed.' : 'OK',
      },
    };
  },
  refused(refusal): CompatibleResponse {
    const answer = postmarkAnswer(refusal);
    return {
      status: answer.status,
      jsonBody: { ErrorCode: answer.errorCode, Message: oneLine(refusal) },
    };
  },
  request: { contentTypes: ['application/json'], schema: emailSchema },
  errorSchema,
};
