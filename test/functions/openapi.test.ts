import { readdirSync } from 'node:fs';
import { HttpRequest } from '@azure/functions';
import { Validator } from '@seriousme/openapi-schema-validator';
import { beforeAll, describe, expect, it } from 'vitest';
import { bindHttp, functionApp, httpHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { buildOpenApiDocument } from '../../shared/api/openApi.ts';
import { errorBodySchema } from '../../shared/api/responseSchemas.ts';
import { type ApiRoute, httpRoutes, queueFunctions, timerFunctions } from '../../shared/api/routes.ts';
import { loadConfig } from '../../shared/config.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { createFileSecretStore } from '../../shared/secrets/fileSecretStore.ts';
import { capturingContext, jsonRequest } from '../support/relayHarness.ts';

type OpenApiDocument = {
  openapi: string;
  servers: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, { name: string }> };
};
type Operation = {
  security: Record<string, string[]>[];
  requestBody?: unknown;
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
};

let document: OpenApiDocument;

beforeAll(async () => {
  // Every file in functions/, as the Functions host loads them: each registers itself from the table.
  const directory = new URL('../../functions/', import.meta.url);
  for (const file of readdirSync(directory).filter((name) => name.endsWith('.ts'))) {
    await import(new URL(file, directory).href);
  }
  const registered = functionApp.http.get('openapi');
  if (registered === undefined) throw new Error('functions/openapi.ts registers openapi');
  const response = await httpHandler(registered, async () => {
    throw new Error('the API description needs no runtime');
  })(
    new HttpRequest({ method: 'GET', url: 'https://relay.example.net/api/openapi.json' }),
    capturingContext('openapi').context,
  );
  expect(response.status).toBe(200);
  document = response.jsonBody as OpenApiDocument;
});

describe('GET /api/openapi.json', () => {
  it('has a handler in functions/ for every function in the table, and no other', () => {
    expect([...functionApp.http.keys()].sort()).toEqual(Object.keys(httpRoutes).sort());
    expect([...functionApp.timers.keys()].sort()).toEqual(Object.keys(timerFunctions).sort());
    expect([...functionApp.queues.keys()].sort()).toEqual(Object.keys(queueFunctions).sort());
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    expect(document.openapi).toBe('3.1.0');
    const result = await new Validator().validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('names the server the request reached', () => {
    expect(document.servers).toEqual([{ url: 'https://relay.example.net' }]);
  });

  it('describes every route of the table at its path below the route prefix, with its method', () => {
    for (const [name, route] of Object.entries(httpRoutes)) {
      const path = `/${route.route.replace(/\{([A-Za-z0-9_]+)[^}]*\}/g, '{$1}')}`;
      const operation = document.paths[path]?.[route.method.toLowerCase()] as
        | { operationId?: string }
        | undefined;
      expect(operation?.operationId, `${route.method} ${path}`).toBe(name);
    }
  });

  it("follows host.json's route prefix", () => {
    // host.json's routePrefix is "" (Postmark's SDK posts to /email at the root), so every other route
    // spells out its api/ path; under another prefix every path moves below it.
    const prefixed = buildOpenApiDocument({ routePrefix: 'relay' }) as OpenApiDocument;
    expect(Object.keys(prefixed.paths)).toContain('/relay/api/send');
    expect(Object.keys(prefixed.paths)).toContain('/relay/email');
    expect(Object.keys(document.paths)).toContain('/api/send/{id}');
    expect(Object.keys(document.paths)).toContain('/email');
  });

  it('requires the function key and the caller key for sending', () => {
    const send = document.paths['/api/send']?.post;
    expect(send?.security).toEqual([{ functionKey: [], callerKey: [] }]);
    expect(document.components.securitySchemes.functionKey?.name).toBe('x-functions-key');
    expect(document.components.securitySchemes.callerKey?.name).toBe('x-relay-key');
    expect(document.paths['/api/openapi.json']?.get?.security).toEqual([]);
  });

  it('describes the compatible APIs with their own key, request body and error shape', () => {
    const expected = [
      [
        '/api/sendgrid/v3/mail/send',
        'bearerCallerKey',
        'SendGridMailSend',
        'SendGridError',
        'application/json',
      ],
      ['/api/resend/emails', 'bearerCallerKey', 'ResendEmail', 'ResendError', 'application/json'],
      ['/email', 'postmarkServerToken', 'PostmarkEmail', 'PostmarkError', 'application/json'],
      [
        '/api/mailgun/v3/{domain}/messages',
        'basicCallerKey',
        'MailgunMessage',
        'MailgunError',
        'multipart/form-data',
      ],
    ] as const;
    for (const [path, carrier, requestSchema, errorSchema, contentType] of expected) {
      const operation = document.paths[path]?.post;
      // No function key: an SDK cannot send one, so the caller key is the only key.
      expect(operation?.security, path).toEqual([{ [carrier]: [] }]);
      const body = operation?.requestBody as { content: Record<string, { schema: unknown }> } | undefined;
      expect(body?.content[contentType]?.schema, path).toEqual({
        $ref: `#/components/schemas/${requestSchema}`,
      });
      expect(JSON.stringify(operation?.responses['401']), path).toContain(
        `#/components/schemas/${errorSchema}`,
      );
      expect(document.components.schemas[requestSchema], requestSchema).toBeDefined();
    }
    expect(document.components.securitySchemes.postmarkServerToken?.name).toBe('X-Postmark-Server-Token');
  });

  it('takes the send request schema from the validator, with every field the parser accepts', () => {
    const schema = document.components.schemas.SendRequest as {
      properties: Record<string, unknown>;
      required: string[];
      additionalProperties: boolean;
    };
    expect(Object.keys(schema.properties).sort()).toEqual(
      [
        'attachments',
        'bcc',
        'cc',
        'from',
        'headers',
        'html',
        'priority',
        'replyTo',
        'subject',
        'text',
        'to',
      ].sort(),
    );
    expect(schema.required).toEqual(expect.arrayContaining(['from', 'subject']));
    expect(schema.additionalProperties).toBe(false);
    expect(JSON.stringify(schema.properties.headers)).toContain('^X-');
  });

  it('lists each error code of the send route under its HTTP status', () => {
    const responses = document.paths['/api/send']?.post?.responses ?? {};
    const codesAt = (status: string) =>
      JSON.stringify(responses[status]?.content?.['application/json']?.schema);
    expect(codesAt('400')).toContain('"invalid_request"');
    expect(codesAt('401')).toContain('"caller_key_missing"');
    expect(codesAt('403')).toContain('"sender_not_allowed"');
    expect(codesAt('413')).toContain('"message_too_large"');
    expect(codesAt('429')).toContain('"recipient_quota_exceeded"');
    expect(codesAt('502')).toContain('"smtp_auth_disabled"');
    expect(codesAt('502')).toContain('"federated_credential_invalid"');
    expect(codesAt('503')).toContain('"smtp_throttled"');
    expect(codesAt('400')).not.toContain('"smtp_throttled"');
  });

  it('describes the error body the send handler really returns', async () => {
    const config = loadConfig({
      RELAY_CALLERS: JSON.stringify([{ name: 'a', keySha256: 'a'.repeat(64), senders: ['*'] }]),
    });
    const secrets = createCachedSecretStore(createFileSecretStore('/nonexistent/secrets.json'), {
      ttlSeconds: 0,
    });
    const response = await bindHttp(send, createRuntime(config, secrets))(
      jsonRequest('http://localhost/api/send', { from: 'x' }, {}),
      capturingContext().context,
    );
    expect(response.status).toBe(401);
    expect(errorBodySchema.safeParse(response.jsonBody).success).toBe(true);
  });

  it('stays valid when routes with path, header and query parameters, 202 and HTML answers are added', async () => {
    const added: Record<string, ApiRoute> = {
      ...httpRoutes,
      queuedStatus: {
        route: 'api/send/{id:guid}',
        method: 'GET',
        authLevel: 'function',
        callerKey: 'callerKey',
        summary: 'A queued message',
        responses: { 200: { description: 'Its state', schema: 'document' } },
        errors: ['caller', 'internal'],
      },
      callback: {
        route: 'api/oauth/callback',
        method: 'GET',
        authLevel: 'anonymous',
        callerKey: false,
        summary: 'Entra ID returns here',
        parameters: [{ name: 'code', in: 'query', description: 'authorization code', required: true }],
        responses: { 200: { description: 'A page', contentType: 'text/html' } },
        errors: ['identity', 'internal'],
      },
      replaceSend: {
        route: 'api/send',
        method: 'PUT',
        authLevel: 'admin',
        callerKey: false,
        summary: 'A second function on the same route, with another method',
        parameters: [{ name: 'Prefer', in: 'header', description: 'respond-async' }],
        responses: { 202: { description: 'Queued', headers: { Location: { description: 'status URL' } } } },
        errors: ['internal'],
      },
    };
    const extended = buildOpenApiDocument({ routes: added }) as OpenApiDocument;
    const result = await new Validator().validate(extended);
    expect(result.errors ?? []).toEqual([]);
    expect(Object.keys(extended.paths)).toEqual(
      expect.arrayContaining(['/api/send/{id}', '/api/oauth/callback']),
    );
    expect(extended.paths['/api/send']?.put?.security).toEqual([{ adminKey: [] }]);
  });
});
