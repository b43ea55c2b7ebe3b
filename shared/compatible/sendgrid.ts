import { z } from 'zod';
import { readJsonBody } from '../api/requestBody.ts';
import { type FieldProblem, invalidRequest } from '../errors.ts';
import type { CompatibleApi, CompatibleResponse } from './compatibleApi.ts';
import {
  badRequestStatus,
  formatProblems,
  refuseUnsupported,
  type Unsupported,
  zodProblems,
} from './compatibleFields.ts';

/**
 * SendGrid v3 Mail Send (POST /v3/mail/send), as @sendgrid/mail and SendGrid's other SDKs send it (snake
 * case on the wire). Each personalization is one message: its recipients, and its subject and headers
 * over the message's. Answers as SendGrid does: 202 with no body and X-Message-Id, and errors as
 * `{ errors: [{ message, field, help }] }`, which the SDK's ResponseError exposes as `response.body`.
 */
const emailObject = z.strictObject({ email: z.string(), name: z.string().optional() });

const personalization = z.strictObject({
  to: z.array(emailObject).optional(),
  cc: z.array(emailObject).optional(),
  bcc: z.array(emailObject).optional(),
  from: emailObject.optional(),
  subject: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  substitutions: z.unknown().optional(),
  dynamic_template_data: z.unknown().optional(),
  custom_args: z.record(z.string(), z.string()).optional(),
  send_at: z.unknown().optional(),
});

const mailSendSchema = z.strictObject({
  personalizations: z.array(personalization).min(1).max(1000),
  from: emailObject,
  reply_to: emailObject.optional(),
  reply_to_list: z.array(emailObject).max(1000).optional(),
  subject: z.string().optional(),
  content: z.array(z.strictObject({ type: z.string(), value: z.string() })).optional(),
  attachments: z
    .array(
      z.strictObject({
        content: z.string(),
        type: z.string().optional(),
        filename: z.string(),
        disposition: z.enum(['inline', 'attachment']).optional(),
        content_id: z.string().optional(),
        // @sendgrid/mail 8 sends an inline attachment's id as contentId (its Attachment.toJSON does not
        // convert that key), so both spellings are the content id.
        contentId: z.string().optional(),
      }),
    )
    .optional(),
  headers: z.record(z.string(), z.string()).optional(),
  categories: z.array(z.string()).max(10).optional(),
  custom_args: z.record(z.string(), z.string()).optional(),
  template_id: z.unknown().optional(),
  sections: z.unknown().optional(),
  send_at: z.unknown().optional(),
  batch_id: z.unknown().optional(),
  asm: z.unknown().optional(),
  ip_pool_name: z.unknown().optional(),
  mail_settings: z.unknown().optional(),
  tracking_settings: z.unknown().optional(),
});

type MailSend = z.infer<typeof mailSendSchema>;
type EmailObject = z.infer<typeof emailObject>;

const template =
  'The relay sends the content it is given; render the template in the app and send html or text.';

/** What the relay cannot honour, refused with 400 naming the field (never dropped). */
const unsupported: Unsupported<MailSend> = {
  template_id: template,
  sections: template,
  send_at:
    'Scheduled sending is not supported; send at the time it should go, or queue it with Prefer: respond-async.',
  batch_id: 'Batches (for cancelling scheduled sends) are not supported: the relay does not schedule.',
  asm: 'Unsubscribe groups are SendGrid features; put a List-Unsubscribe link in the content instead.',
  ip_pool_name: 'Exchange Online sends from its own addresses; IP pools do not apply.',
  mail_settings:
    'Mail settings (sandbox mode, footers, bypass lists) are SendGrid features the relay does not have.',
  tracking_settings: 'Open and click tracking are SendGrid features the relay does not have.',
};

const unsupportedPerPersonalization: Unsupported<z.infer<typeof personalization>> = {
  substitutions: template,
  dynamic_template_data: template,
  send_at: unsupported.send_at ?? '',
};

function relayAddress(entry: EmailObject): { address: string; name?: string } {
  return entry.name === undefined ? { address: entry.email } : { address: entry.email, name: entry.name };
}

/** categories and custom_args become X- headers, where a mail rule or a reader can still see them. */
function metadataHeaders(
  mail: MailSend,
  customArgs: Record<string, string> | undefined,
): Record<string, string> {
  const headers: Record<string, string> = {};
  if (mail.categories !== undefined && mail.categories.length > 0)
    headers['X-Category'] = mail.categories.join(', ');
  const args = { ...mail.custom_args, ...customArgs };
  if (Object.keys(args).length > 0) headers['X-Custom-Args'] = JSON.stringify(args);
  return headers;
}

function contentOf(mail: MailSend): { text?: string; html?: string; problems: FieldProblem[] } {
  const result: { text?: string; html?: string; problems: FieldProblem[] } = { problems: [] };
  for (const [index, part] of (mail.content ?? []).entries()) {
    const type = part.type.toLowerCase();
    if (type === 'text/plain' && result.text === undefined) result.text = part.value;
    else if (type === 'text/html' && result.html === undefined) result.html = part.value;
    else
      result.problems.push({
        field: `content[${index}].type`,
        message: 'only one text/plain and one text/html part are supported; send other types as attachments',
      });
  }
  return result;
}

/** What naming a field needs of the request: where each part came from, not the content (it outlives it). */
interface SendGridShape {
  replyToList: boolean;
  personalizations: { from: boolean; subject: boolean }[];
  /** The content[] index of the text/plain and text/html parts, -1 when absent. */
  textPart: number;
  htmlPart: number;
}

function shapeOf(mail: MailSend): SendGridShape {
  const partOf = (type: string) =>
    (mail.content ?? []).findIndex((entry) => entry.type.toLowerCase() === type);
  return {
    replyToList: mail.reply_to_list !== undefined,
    personalizations: mail.personalizations.map((entry) => ({
      from: entry.from !== undefined,
      subject: entry.subject !== undefined,
    })),
    textPart: partOf('text/plain'),
    htmlPart: partOf('text/html'),
  };
}

/** The relay's field names for message `index` back in the request's: `to[2].address` -> `personalizations[0].to[2].email`. */
function sendgridField(shape: SendGridShape, index: number, field: string): string {
  const here = `personalizations[${index}]`;
  if (field === '(message)') return here;
  const [head = '', ...rest] = field.split('.');
  const tail = rest.join('.');
  const list = /^(to|cc|bcc|replyTo)(\[\d+\])?$/.exec(head);
  if (list !== null) {
    const property = tail === 'address' ? '.email' : tail === '' ? '' : `.${tail}`;
    if (list[1] === 'replyTo')
      return shape.replyToList ? `reply_to_list${list[2] ?? ''}${property}` : `reply_to${property}`;
    return `${here}.${list[1]}${list[2] ?? ''}${property}`;
  }
  const personalization = shape.personalizations[index];
  if (head === 'from') return personalization?.from === true ? `${here}.from.email` : 'from.email';
  if (head === 'subject') return personalization?.subject === true ? `${here}.subject` : 'subject';
  if (head === 'text' || head === 'html') {
    const part = head === 'text' ? shape.textPart : shape.htmlPart;
    return part < 0 ? 'content' : `content[${part}].value`;
  }
  const attachment = /^attachments(\[\d+\])?$/.exec(head);
  if (attachment !== null) {
    const names: Record<string, string> = { contentType: 'type', contentId: 'content_id' };
    return `attachments${attachment[1] ?? ''}${tail === '' ? '' : `.${names[tail] ?? tail}`}`;
  }
  return field;
}

function toRelayBodies(mail: MailSend): unknown[] {
  const content = contentOf(mail);
  const problems = [
    ...refuseUnsupported(mail, unsupported, ''),
    ...mail.personalizations.flatMap((entry, index) =>
      refuseUnsupported(entry, unsupportedPerPersonalization, `personalizations[${index}].`),
    ),
    ...content.problems,
  ];
  if (problems.length > 0) throw invalidRequest(problems);
  const replyTo = mail.reply_to_list ?? (mail.reply_to === undefined ? [] : [mail.reply_to]);
  const attachments = (mail.attachments ?? []).map((file) => ({
    filename: file.filename,
    content: file.content,
    ...(file.type === undefined ? {} : { contentType: file.type }),
    ...((file.content_id ?? file.contentId) === undefined
      ? {}
      : { contentId: file.content_id ?? file.contentId }),
  }));
  return mail.personalizations.map((entry) => ({
    from: relayAddress(entry.from ?? mail.from),
    to: (entry.to ?? []).map(relayAddress),
    cc: (entry.cc ?? []).map(relayAddress),
    bcc: (entry.bcc ?? []).map(relayAddress),
    ...(replyTo.length === 0 ? {} : { replyTo: replyTo.map(relayAddress) }),
    subject: entry.subject ?? mail.subject ?? '',
    ...(content.text === undefined ? {} : { text: content.text }),
    ...(content.html === undefined ? {} : { html: content.html }),
    ...(attachments.length === 0 ? {} : { attachments }),
    headers: { ...mail.headers, ...entry.headers, ...metadataHeaders(mail, entry.custom_args) },
  }));
}

const errorSchema = z.object({
  errors: z.array(
    z.object({
      message: z.string(),
      field: z
        .string()
        .nullable()
        .meta({ description: 'The request field at fault, e.g. personalizations[0].to[0].email' }),
      help: z.string().nullable().meta({ description: 'What to do (the relay remedy), or null' }),
    }),
  ),
});

export const sendgridApi: CompatibleApi = {
  async read(request, maxBodyBytes) {
    const body = await readJsonBody(request, maxBodyBytes);
    const parsed = mailSendSchema.safeParse(body);
    if (!parsed.success) throw invalidRequest(zodProblems(parsed.error));
    const mail = parsed.data;
    const shape = shapeOf(mail);
    return { bodies: toRelayBodies(mail), fieldOf: (index, field) => sendgridField(shape, index, field) };
  },
  accepted(responses): CompatibleResponse {
    const messageId = (responses[0]?.body as { messageId?: string } | undefined)?.messageId ?? '';
    return { status: 202, headers: { 'X-Message-Id': messageId.replace(/^<|>$/g, '') } };
  },
  refused(refusal): CompatibleResponse {
    const help = refusal.error.remedy ?? null;
    const errors = formatProblems(refusal.error).map((problem) => ({
      message: problem.message,
      field: problem.field,
      help,
    }));
    return { status: badRequestStatus(refusal), jsonBody: { errors } };
  },
  request: { contentTypes: ['application/json'], schema: mailSendSchema },
  errorSchema,
  // @sendgrid/mail warns "API key does not start with SG." for any other key.
  keyPrefix: 'SG.',
};
