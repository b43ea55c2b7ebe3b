import { z } from 'zod';
import { callerKeyHeader } from '../callers.ts';
import type { RelayConfig } from '../config.ts';
import { sendRequestJsonSchema } from '../message.ts';
import { sendQueueName } from '../storage/relayStorage.ts';
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
  /** The relay's own caller key (x-relay-key) is required as well. */
  callerKey: boolean;
  summary: string;
  description?: string;
  parameters?: readonly ParameterDescription[];
  requestBody?: { schema: SchemaName; description?: string };
  responses: Record<number, ResponseDescription>;
  /** The error codes the route can answer with, by area of the error catalog. */
  errors: readonly ErrorArea[];
}

export const httpRoutes = {
  send: {
    route: 'send',
    method: 'POST',
    authLevel: 'function',
    callerKey: true,
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
    requestBody: { schema: 'SendRequest' },
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
    route: 'oauth/start',
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
    route: 'oauth/callback',
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
    route: 'status',
    method: 'GET',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Health of every mailbox and of the app credential',
    description:
      'Lists each mailbox with its mode, health, last refresh, last error and remedy, and for mailboxes that need consent the start URL that fixes it. Also the days left before the client secret or certificate expires. Never includes secrets.',
    responses: { 200: { description: 'Mailbox and credential health', schema: 'document' } },
    errors: ['configuration', 'secrets', 'internal'],
  },
  sendStatus: {
    route: 'send/{id}',
    method: 'GET',
    authLevel: 'function',
    callerKey: true,
    summary: 'Status of a queued message',
    description:
      'queued, sending, sent (with messageId and the SMTP response) or failed (with code and remedy). Only the caller that queued the message can read it.',
    responses: { 200: { description: 'The message status', schema: 'document' } },
    errors: ['request', 'caller', 'configuration', 'internal'],
  },
  checkMailbox: {
    route: 'mailboxes/{address}/test',
    method: 'POST',
    authLevel: 'admin',
    callerKey: false,
    summary: 'Test connection: token, TCP, STARTTLS and certificate chain, XOAUTH2, optional test message',
    description:
      'Runs each step and reports it with the remedy of the first failure. Sends a message only when the optional body { "sendTo": "<address>" } asks for it.',
    responses: { 200: { description: 'The step-by-step report', schema: 'document' } },
    errors: ['request', 'configuration', 'secrets', 'identity', 'smtp', 'internal'],
  },
  openapi: {
    route: 'openapi.json',
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
