import { readdirSync } from 'node:fs';
import { app, type HttpFunctionOptions, HttpRequest } from '@azure/functions';
import { Validator } from '@seriousme/openapi-schema-validator';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { buildOpenApiDocument } from '../../shared/api/openApi.ts';
import { errorBodySchema } from '../../shared/api/responseSchemas.ts';
import { type ApiRoute, apiRoutes } from '../../shared/api/routes.ts';
import { loadConfig } from '../../shared/config.ts';
import { capturingContext, jsonRequest } from '../support/relayHarness.ts';

interface Registration {
  name: string;
  route: string;
  methods: string[];
  authLevel: string;
}

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

/**
 * Imports every file in functions/ with app.http (and its get/post/... shorthands, which bypass it) spied,
 * so a route registered by any function, including ones added later, must appear in the route table.
 */
async function discoverHttpRoutes(): Promise<Registration[]> {
  const registrations: Registration[] = [];
  const record = (
    name: string,
    options: HttpFunctionOptions | HttpFunctionOptions['handler'],
    method?: string,
  ) => {
    const resolved = typeof options === 'function' ? { handler: options } : options;
    registrations.push({
      name,
      route: resolved.route ?? name,
      // The library's defaults when a registration leaves them out.
      methods: method !== undefined ? [method] : (resolved.methods ?? ['GET', 'POST']),
      authLevel: resolved.authLevel ?? 'anonymous',
    });
  };
  vi.spyOn(app, 'http').mockImplementation((name, options) => record(name, options));
  for (const [shorthand, method] of [
    ['get', 'GET'],
    ['post', 'POST'],
    ['put', 'PUT'],
    ['patch', 'PATCH'],
    ['deleteRequest', 'DELETE'],
  ] as const) {
    vi.spyOn(app, shorthand).mockImplementation((name, options) => record(name, options, method));
  }
  const directory = new URL('../../functions/', import.meta.url);
  for (const file of readdirSync(directory).filter((name) => name.endsWith('.ts'))) {
    await import(new URL(file, directory).href);
  }
  return registrations;
}

let registrations: Registration[];
let document: OpenApiDocument;

beforeAll(async () => {
  registrations = await discoverHttpRoutes();
  vi.restoreAllMocks();
  // Imported only now: a module imported before the spies were set would not register again.
  const { createOpenApiHandler } = await import('../../functions/openapi.ts');
  const response = await createOpenApiHandler()(
    new HttpRequest({ method: 'GET', url: 'https://relay.example.net/api/openapi.json' }),
    capturingContext('openapi').context,
  );
  expect(response.status).toBe(200);
  document = response.jsonBody as OpenApiDocument;
});

describe('GET /api/openapi.json', () => {
  it('is registered anonymously', () => {
    expect(registrations).toContainEqual({
      name: 'openapi',
      route: 'openapi.json',
      methods: ['GET'],
      authLevel: 'anonymous',
    });
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

  it('describes every HTTP route registered in functions/, with its method and auth level', () => {
    expect(registrations.length).toBeGreaterThanOrEqual(2);
    for (const registration of registrations) {
      for (const method of registration.methods) {
        const described = apiRoutes.find(
          (route) => route.route === registration.route && route.method === method.toUpperCase(),
        );
        expect(described, `${method} ${registration.route} is in shared/api/routes.ts`).toBeDefined();
        expect(described?.authLevel, `${method} ${registration.route} auth level`).toBe(
          registration.authLevel,
        );
        const path = `/api/${registration.route.replace(/\{([A-Za-z0-9_]+)[^}]*\}/g, '{$1}')}`;
        expect(
          document.paths[path]?.[method.toLowerCase()],
          `${method} ${path} in the document`,
        ).toBeDefined();
      }
    }
    // And nothing is described that no function registers.
    for (const route of apiRoutes) {
      expect(
        registrations.some((entry) => entry.route === route.route && entry.methods.includes(route.method)),
        `${route.method} ${route.route} is registered`,
      ).toBe(true);
    }
  });

  it('requires the function key and the caller key for sending', () => {
    const send = document.paths['/api/send']?.post;
    expect(send?.security).toEqual([{ functionKey: [], callerKey: [] }]);
    expect(document.components.securitySchemes.functionKey?.name).toBe('x-functions-key');
    expect(document.components.securitySchemes.callerKey?.name).toBe('x-relay-key');
    expect(document.paths['/api/openapi.json']?.get?.security).toEqual([]);
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
    const { createSendHandler } = await import('../../functions/send.ts');
    const handler = createSendHandler(async () => ({ config }) as never);
    const response = await handler(
      jsonRequest('http://localhost/api/send', { from: 'x' }, {}),
      capturingContext().context,
    );
    expect(response.status).toBe(401);
    expect(errorBodySchema.safeParse(response.jsonBody).success).toBe(true);
  });

  it('stays valid when routes with path, header and query parameters, 202 and HTML answers are added', async () => {
    const added: ApiRoute[] = [
      ...apiRoutes,
      {
        name: 'sendStatus',
        route: 'send/{id:guid}',
        method: 'GET',
        authLevel: 'function',
        callerKey: true,
        summary: 'A queued message',
        responses: { 200: { description: 'Its state', schema: 'document' } },
        errors: ['caller', 'internal'],
      },
      {
        name: 'oauthCallback',
        route: 'oauth/callback',
        method: 'GET',
        authLevel: 'anonymous',
        callerKey: false,
        summary: 'Entra ID returns here',
        parameters: [{ name: 'code', in: 'query', description: 'authorization code', required: true }],
        responses: { 200: { description: 'A page', contentType: 'text/html' } },
        errors: ['identity', 'internal'],
      },
      {
        name: 'send',
        route: 'send',
        method: 'PUT',
        authLevel: 'admin',
        callerKey: false,
        summary: 'A second method on one function',
        parameters: [{ name: 'Prefer', in: 'header', description: 'respond-async' }],
        responses: { 202: { description: 'Queued', headers: { Location: { description: 'status URL' } } } },
        errors: ['internal'],
      },
    ];
    const extended = buildOpenApiDocument({ routes: added }) as OpenApiDocument;
    const result = await new Validator().validate(extended);
    expect(result.errors ?? []).toEqual([]);
    expect(Object.keys(extended.paths)).toEqual(
      expect.arrayContaining(['/api/send/{id}', '/api/oauth/callback']),
    );
    expect(extended.paths['/api/send']?.put?.security).toEqual([{ adminKey: [] }]);
  });
});
