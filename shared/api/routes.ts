import { z } from 'zod';
import { callerKeyHeader } from '../callers.ts';
import type { CompatibleApi } from '../compatible/compatibleApi.ts';
import { mailgunApi } from '../compatible/mailgun.ts';
import { postmarkApi } from '../compatible/postmark.ts';
import { resendApi } from '../compatible/resend.ts';
import { sendgridApi } from '../compatible/sendgrid.ts';
import type { RelayConfig } from '../config.ts';
import { sendRequestJsonSchema } from '../message.ts';
import { sendQueueName } from '../storage/relayStorage.ts';
import type { CallerKeyCarrierName } from './callerKeyCarriers.ts';
import type { ErrorArea } from './errorCatalog.ts';
import { prefixedPath } from './hostJson.ts';
import { errorBodySchema, sendResultSchema } from './responseSchemas.ts';

/**
 * Every function the app has, declared once, keyed by its function name. The registrations in functions/
 * (`registerHttp('send', send)`), the development host (devhost/) and the API description (openApi.ts) are
 * all made from these tables, so they cannot disagree. To add an HTTP function: add its body schemas to
 * `componentSchemas` (generated from zod), one entry to `httpRoutes`, and a file in functions/ that
 * registers its handler under the same name.
 */
export type JsonSchema = Record<string, unknown>;
export type AuthLevel = 'anonymous' | 'function' | 'admin';
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A response body schema from zod, as JSON Schema draft 2020-12 (OpenAPI 3.1's dialect). */
export function fromZod(schema: z.ZodType, io: 'input' | 'output' = 'output'): () => JsonSchema {
  return () => {
    const { $schema: _dialect, ...jsonSchema } = z.toJSONSchema(schema, { io, target: 'draft-2020-12' });
    return jsonSchema;
  };
}

/** Named body schemas, referenced from routes and emitted under components.schemas. */
export const componentSchemas = {
  SendRequest: sendRequestJsonSchema,
  SendResult: fromZod(sendResultSchema),
  ErrorBody: fromZod(errorBodySchema),
  SendGridMailSend: fromZod(sendgridApi.request.schema, 'input'),
  SendGridError: fromZod(sendgridApi.errorSchema),
  ResendEmail: fromZod(resendApi.request.schema, 'input'),
  ResendError: fromZod(resendApi.errorSchema),
  PostmarkEmail: fromZod(postmarkApi.request.schema, 'input'),
  PostmarkError: fromZod(postmarkApi.errorSchema),
  MailgunMessage: fromZod(mailgunApi.request.schema, 'input'),
  MailgunError: fromZod(mailgunApi.errorSchema),
} satisfies Record<string, () => JsonSchema>;

export type SchemaName = keyof typeof componentSchemas;

export interface ResponseDescription {
  description: string;
  /** A component schema, or `document` for a free-form JSON object. */
  schema?: SchemaName | 'document';
  /** `application/json` unless given (e.g. `text/html` for a page a browser shows). */
  contentType?: string;
  headers?: Record<string, { description: string }>;
}

/** A header or query parameter (path parameters are read from the route itself). */
export interface ParameterDescription {
  name: string;
  in: 'header' | 'query';
  description: string;
  required?: boolean;
  /** JSON Schema of the value; a string when omitted. */
  schema?: JsonSchema;
}

export interface ApiRoute {
  /** The route as registered, below host.json's routePrefix, with Functions' `{parameter}` placeholders. */
  route: string;
  method: HttpMethod;
  /** The Functions host's key check: function and admin keys go in x-functions-key. */
  authLevel: AuthLevel;
  /** Where the relay caller key is required (shared/api/callerKeyCarriers.ts), or false for none. */
  callerKey: CallerKeyCarrierName | false;
  summary: string;
  description?: string;
  parameters?: readonly ParameterDescription[];
  /** The body, as one of `contentTypes` (`application/json` unless given). */
  requestBody?: {
    schema: SchemaName;
    description?: string;
    contentTypes?: readonly string[];
    /** Media types accepted besides the JSON schema's, whose body is the bytes themselves (a MIME message). */
    rawContentTypes?: readonly string[];
  };
  responses: Record<number, ResponseDescription>;
  /** The shape of this route's error bodies: the relay's ErrorBody unless given (a compatible API's own). */
  errorBody?: SchemaName;
  /** For a compatible API's route, the translation its handler runs (functions/compatibleApis.ts). */
  compatibleApi?: CompatibleApi;
  /** The error codes the route can answer with, by area of the error catalog. */
  errors: readonly ErrorArea[];
}

/**
 * A compatible API's route (shared/compatible/): anonymous to the Functions host, because an SDK cannot send
 * a function key, so the relay caller key, carried where the provider's SDK carries its API key, is the
 * only key; its errors are the provider's shapes.
 */
function compatibleRoute(entry: {
  route: string;
  api: CompatibleApi;
  callerKey: CallerKeyCarrierName;
  requestSchema: SchemaName;
  errorBody: SchemaName;
  summary: string;
  description: string;
  success: Record<number, ResponseDescription>;
}): ApiRoute {
  return {
    route: entry.route,
    method: 'POST',
    authLevel: 'anonymous',
    callerKey: entry.callerKey,
    summary: entry.summary,
    description: entry.description,
    parameters: [
      {
        name: 'Idempotency-Key',
        in: 'header',
        description:
          'As on /api/send: a repeat with the same body within 24 hours returns the original answer and sends nothing.',
      },
    ],
    requestBody: { schema: entry.requestSchema, contentTypes: entry.api.request.contentTypes },
    responses: entry.success,
    errorBody: entry.errorBody,
    compatibleApi: entry.api,
    errors: ['request', 'caller', 'configuration', 'secrets', 'identity', 'smtp', 'internal'],
  };
}

export const httpRoutes = {
  send: {
    route: 'api/send',
    method: 'POST',
    authLevel: 'function',
    callerKey: 'callerKey',
    summary: 'Send one message through Exchange Online',
    description: `Authenticates the caller by ${callerKeyHeader}, validates the message, checks the caller may use the sender, and relays it over SMTP AUTH (XOAUTH2). Answers with Exchange's outcome.`,
    parameters: [
      {
        name: 'Idempotency-Key',
        in: 'header',
        description:
          'Up to 256 printable ASCII characters, scoped to the caller. A repeat with the same body within 24 hours returns the original answer and sends nothing; a different body gets 422.',
      },
      {
        name: 'Prefer',
        in: 'header',
        description: '`respond-async` queues the message durably and answers 202 with a status URL.',
      },
    ],
    requestBody: {
      schema: 'SendRequest',
      description:
        'A JSON send request, or with Content-Type message/rfc822 a whole MIME message (streamed; From names the one sender, To/Cc/Bcc the recipients; Bcc is removed, Message-ID and Date added when missing).',
      rawContentTypes: ['message/rfc822'],
    },
    responses: {
      200: { description: 'Exchange accepted the message', schema: 'SendResult' },
      202: {
        description: 'Queued (Prefer: respond-async): id and status URL',
        schema: 'document',
        headers: { Location: { description: 'GET this URL for the status' } },
      },
    },
    errors: ['request', 'caller', 'configuration', 'secrets', 'identity', 'smtp', 'internal'],
  },
  oauthStart: {
    route: 'api/oauth/start',
    method: 'GET',
    authLevel: 'function',
    callerKey: false,
    summary: 'Start connecting a delegated mailbox (browser redirect to Microsoft sign-in)',
    description:
      'Redirects the browser to the Entra ID authorize endpoint (authorization code with PKCE, login_hint=mailbox, prompt=select_account). The state is bound to the mailbox and to this browser, expires in 10 minutes and is accepted once.',
    parameters: [
      {
        name: 'mailbox',
        in: 'query',
        required: true,
        description: 'The delegated mailbox to connect, as listed in RELAY_MAILBOXES.',
      },
    ],
    responses: {
      302: {
        description: 'Redirect to the Microsoft sign-in page',
        headers: { Location: { description: 'The authorize URL' } },
      },
    },
    errors: ['request', 'configuration', 'secrets', 'internal'],
  },
  oauthCallback: {
    route: 'api/oauth/callback',
    method: 'GET',
    authLevel: 'anonymous',
    callerKey: false,
    summary: 'Where Microsoft sends the browser back after sign-in',
    description:
      'Checks the state, redeems the code and checks that the signed-in account is the mailbox being connected. Answers with a small HTML page: 200 connected, 400 bad or expired state or a sign-in error, 409 a different account signed in (nothing stored), 502 the code could not be redeemed.',
    parameters: [
      { name: 'state', in: 'query', description: 'The state issued by /api/oauth/start.' },
      { name: 'code', in: 'query', description: 'The authorization code (never echoed or logged).' },
      { name: 'error', in: 'query', description: 'An error from the identity provider, e.g. access_denied.' },
    ],
    responses: {
      200: { description: 'The mailbox is connected', contentType: 'text/html' },
      400: {
        description: 'Missing, forged, expired or replayed state, or a sign-in error',
        contentType: 'text/html',
      },
      409: { description: 'A different account signed in; nothing was stored', contentType: 'text/html' },
      502: { description: 'The code could not be redeemed', contentType: 'text/html' },
    },
    errors: ['internal'],
  },
  status: {
    route: 'api/status',
    method: 'GET',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Health of every mailbox and of the app credential',
    description:
      'Lists each mailbox with its mode, health, last refresh, last error and remedy, and for mailboxes that need consent the start URL that fixes it. Also the days left before the client secret or certificate expires. Never includes secrets.',
    responses: { 200: { description: 'Mailbox and credential health', schema: 'document' } },
    errors: ['configuration', 'secrets', 'internal'],
  },
  health: {
    route: 'api/health',
    method: 'GET',
    authLevel: 'function',
    callerKey: false,
    summary: 'For uptime monitors: 200 when every mailbox can send and the app credential is valid, else 503',
    description:
      'Served from the stored health (the timer, consents, disconnects and sends keep it), not from live token requests: cheap to poll every minute. problems lists each mailbox or the credential that stops mail (subject, state, code, message, remedy, consentUrl); warnings a credential within 30 days of expiry. Never a secret.',
    responses: {
      200: {
        description: 'Every configured mailbox can send and the credential is valid',
        schema: 'document',
      },
      503: { description: 'Something stops mail: the problems and what to do', schema: 'document' },
    },
    errors: ['configuration', 'internal'],
  },
  admin: {
    route: 'api/admin',
    method: 'GET',
    authLevel: 'admin',
    callerKey: false,
    summary: 'The admin page: mailboxes, credential, queue, with Connect, Disconnect, Test and Retry',
    description:
      'One server-rendered HTML page (strict CSP, no external resources). Open it as /api/admin?code=<admin key>: its script sends the key from its own address to this origin only.',
    responses: { 200: { description: 'The page', contentType: 'text/html' } },
    errors: ['configuration', 'internal'],
  },
  disconnectMailbox: {
    route: 'api/mailboxes/{address}/connection',
    method: 'DELETE',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Disconnect a delegated mailbox: stop using and refreshing its sign-in',
    description:
      'Records the mailbox as disconnected (every instance refuses sends as it within 30 s with 409 mailbox_not_connected, whose remedy is the connect URL) and overwrites its token cache with an empty version. The secret is never deleted, so connecting again through /api/oauth/start works at once.',
    responses: {
      200: {
        description: 'Disconnected: { mailbox, health, disconnectedAt, consentUrl }',
        schema: 'document',
      },
    },
    errors: ['request', 'configuration', 'secrets', 'internal'],
  },
  retryPoisoned: {
    route: 'api/admin/poisoned/{id}/retry',
    method: 'POST',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Send a poisoned queued message again, after its cause was fixed',
    description:
      "Moves the message from the poison queue back to the send queue; its status (GET /api/send/{id}) says queued, then sent. It counts against its caller's queue quota again.",
    responses: { 200: { description: 'Queued again: { id, state }', schema: 'document' } },
    errors: ['request', 'caller', 'configuration', 'internal'],
  },
  sendStatus: {
    route: 'api/send/{id}',
    method: 'GET',
    authLevel: 'function',
    callerKey: 'callerKey',
    summary: 'Status of a queued message',
    description:
      'queued, sending, sent (with messageId and the SMTP response) or failed (with code and remedy). Only the caller that queued the message can read it.',
    responses: { 200: { description: 'The message status', schema: 'document' } },
    errors: ['request', 'caller', 'configuration', 'internal'],
  },
  checkMailbox: {
    route: 'api/mailboxes/{address}/test',
    method: 'POST',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Test connection: token, TCP, STARTTLS and certificate chain, XOAUTH2, optional test message',
    description:
      'Runs each step and reports it with the remedy of the first failure. Sends a message only when the optional body { "sendTo": "<address>" } asks for it.',
    responses: { 200: { description: 'The step-by-step report', schema: 'document' } },
    errors: ['request', 'configuration', 'secrets', 'identity', 'smtp', 'internal'],
  },
  sendgridSend: compatibleRoute({
    route: 'api/sendgrid/v3/mail/send',
    api: sendgridApi,
    callerKey: 'bearerCallerKey',
    requestSchema: 'SendGridMailSend',
    errorBody: 'SendGridError',
    summary: 'SendGrid v3 Mail Send, for apps using a SendGrid SDK (base URL <app>/api/sendgrid/)',
    description:
      "One message per personalization, each through the relay's send pipeline. The caller key is the bearer token. Templates, tracking, send_at and other features the relay cannot honour are refused with 400 naming the field.",
    success: {
      202: {
        description:
          'Exchange accepted every message (or each was queued, with Prefer: respond-async); no body',
        headers: {
          'X-Message-Id': { description: 'The Message-ID of the first message, without angle brackets' },
        },
      },
    },
  }),
  resendSend: compatibleRoute({
    route: 'api/resend/emails',
    api: resendApi,
    callerKey: 'bearerCallerKey',
    requestSchema: 'ResendEmail',
    errorBody: 'ResendError',
    summary: 'Resend Send Email, for apps using a Resend SDK (base URL <app>/api/resend)',
    description:
      'The caller key is the bearer token; Idempotency-Key is honoured as on /api/send; tags become an X-Tags header. Templates, scheduled_at, topics and attachments by URL are refused with 422 validation_error naming the field.',
    success: { 200: { description: 'Exchange accepted the message: { id }', schema: 'document' } },
  }),
  postmarkSend: compatibleRoute({
    route: 'email',
    api: postmarkApi,
    callerKey: 'postmarkServerToken',
    requestSchema: 'PostmarkEmail',
    errorBody: 'PostmarkError',
    summary:
      "Postmark Send Email, at the server's root, for apps using a Postmark SDK (requestHost <app host>)",
    description:
      'The caller key is the X-Postmark-Server-Token. Templates, tracking and message streams other than outbound are refused with ErrorCode 300 naming the field.',
    success: {
      200: {
        description:
          'Exchange accepted the message: { To, SubmittedAt, MessageID, ErrorCode: 0, Message: "OK" }',
        schema: 'document',
      },
    },
  }),
  mailgunSend: compatibleRoute({
    route: 'api/mailgun/v3/{domain}/messages',
    api: mailgunApi,
    callerKey: 'basicCallerKey',
    requestSchema: 'MailgunMessage',
    errorBody: 'MailgunError',
    summary: 'Mailgun Send Message, for apps using a Mailgun SDK (url <app>/api/mailgun)',
    description:
      'HTTP Basic api:<caller key>. {domain} is the sending domain: a From in another domain is refused, as Mailgun does. multipart/form-data (attachments as file parts) or urlencoded. Templates, tracking and o:deliverytime are refused with 400 naming the field.',
    success: { 200: { description: 'Exchange accepted the message: { id, message }', schema: 'document' } },
  }),
  openapi: {
    route: 'api/openapi.json',
    method: 'GET',
    authLevel: 'anonymous',
    callerKey: false,
    summary: 'This API description (OpenAPI 3.1)',
    responses: { 200: { description: 'The OpenAPI document', schema: 'document' } },
    errors: ['internal'],
  },
} satisfies Record<string, ApiRoute>;

export type RouteName = keyof typeof httpRoutes;

/**
 * The functions that are not HTTP: their triggers, declared here beside the routes for the same reasons.
 * A timer's schedule comes from the relay's configuration; a queue trigger's connection names the app
 * setting that holds the storage connection (the host resolves `<name>` and `<name>__accountName` itself).
 */
export const timerFunctions = {
  tokenRefresh: { schedule: (config: RelayConfig) => config.delegated.refreshSchedule },
} satisfies Record<string, { schedule: (config: RelayConfig) => string }>;

export type TimerName = keyof typeof timerFunctions;

export const queueFunctions = {
  sendQueued: { queueName: sendQueueName, connection: 'RELAY_STORAGE_CONNECTION' },
} satisfies Record<string, { queueName: string; connection: string }>;

export type QueueFunctionName = keyof typeof queueFunctions;

/** `send/{id}` with `{ id: 'abc' }` -> `send/abc`: a route filled in, below the route prefix. */
function fillRoute(route: string, parameters: Record<string, string>): string {
  return route.replace(/\{([A-Za-z0-9_]+)(?::[^}]*)?\??\}/g, (_match, name: string) =>
    encodeURIComponent(parameters[name] ?? ''),
  );
}

/** The path a function is reached at, prefix included: `routePath('sendStatus', { id })` -> `/api/send/<id>`. */
export function routePath(name: RouteName, parameters: Record<string, string> = {}): string {
  return prefixedPath(fillRoute(httpRoutes[name].route, parameters));
}

/**
 * The compatible APIs by provider name (`sendgrid` for `sendgridSend`), with the path each is served at:
 * for `npm run caller-key -- --for <provider>` and the docs.
 */
export function compatibleProviders(): Map<string, { api: CompatibleApi; path: string }> {
  const providers = new Map<string, { api: CompatibleApi; path: string }>();
  for (const [name, route] of Object.entries(httpRoutes) as [RouteName, ApiRoute][]) {
    if (route.compatibleApi === undefined) continue;
    providers.set(name.replace(/Send$/, ''), { api: route.compatibleApi, path: prefixedPath(route.route) });
  }
  return providers;
}
