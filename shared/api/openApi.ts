import { callerKeyCarriers } from './callerKeyCarriers.ts';
import { type ErrorCatalogEntry, errorsIn } from './errorCatalog.ts';
import { hostSettings, prefixedPath } from './hostJson.ts';
import {
  type ApiRoute,
  componentSchemas,
  httpRoutes,
  type JsonSchema,
  type ResponseDescription,
} from './routes.ts';

/**
 * The OpenAPI 3.1 document, built from the route table, the zod schemas that validate requests and shape
 * responses, and the error catalog: nothing in it is kept by hand apart from the prose.
 */
export interface OpenApiOptions {
  /** Where the API is served, e.g. https://relay.azurewebsites.net; paths start with /api. */
  serverUrl?: string;
  version?: string;
  /** The routes to describe, by function name; the app's own route table unless given. */
  routes?: Readonly<Record<string, ApiRoute>>;
  /** host.json's extensions.http.routePrefix unless given. */
  routePrefix?: string;
}

const functionKeyHeader = 'x-functions-key';

const securitySchemes = {
  functionKey: {
    type: 'apiKey',
    in: 'header',
    name: functionKeyHeader,
    description:
      'A function key of the Function App (az functionapp function keys list, or the host default key). The query parameter ?code= works as well. Without it the Functions host answers 401 with no body.',
  },
  adminKey: {
    type: 'apiKey',
    in: 'header',
    name: functionKeyHeader,
    description: "The Function App's master (admin) key: az functionapp keys list --query masterKey.",
  },
  ...Object.fromEntries(Object.entries(callerKeyCarriers).map(([name, carrier]) => [name, carrier.scheme])),
} as const;

function securityOf(route: ApiRoute): Record<string, string[]>[] {
  const requirement: Record<string, string[]> = {};
  if (route.authLevel === 'function') requirement.functionKey = [];
  if (route.authLevel === 'admin') requirement.adminKey = [];
  if (route.callerKey !== false) requirement[route.callerKey] = [];
  return Object.keys(requirement).length === 0 ? [] : [requirement];
}

/** `send/{id:guid}` -> `/api/send/{id}` and its path parameters. */
function openApiPath(route: string, routePrefix: string): { path: string; parameters: string[] } {
  const parameters: string[] = [];
  const path = route.replace(/\{([A-Za-z0-9_]+)(?::[^}]*)?\??\}/g, (_match, name: string) => {
    parameters.push(name);
    return `{${name}}`;
  });
  return { path: prefixedPath(path, routePrefix), parameters };
}

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });

function successResponse(response: ResponseDescription): JsonSchema {
  const schema =
    response.schema === undefined
      ? undefined
      : response.schema === 'document'
        ? { type: 'object' }
        : schemaRef(response.schema);
  return {
    description: response.description,
    ...(response.headers === undefined
      ? {}
      : {
          headers: Object.fromEntries(
            Object.entries(response.headers).map(([name, header]) => [
              name,
              { description: header.description, schema: { type: 'string' } },
            ]),
          ),
        }),
    ...(schema === undefined && response.contentType === undefined
      ? {}
      : {
          content: { [response.contentType ?? 'application/json']: schema === undefined ? {} : { schema } },
        }),
  };
}

function errorResponse(status: number, errors: ErrorCatalogEntry[], errorBody: string): JsonSchema {
  const codes = errors.map((entry) => entry.code);
  const retryable = errors.some((entry) => entry.retryable);
  return {
    description: [
      status === 401
        ? 'Caller not authenticated (the Functions host answers 401 with no body when the function key is missing).'
        : `HTTP ${status}.`,
      ...errors.map((entry) => `\`${entry.code}\`: ${entry.title}`),
    ].join('\n\n'),
    ...(retryable
      ? {
          headers: {
            'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } },
          },
        }
      : {}),
    content: {
      'application/json': {
        schema: {
          allOf: [
            schemaRef(errorBody),
            // A compatible API's errors carry the provider's fields, not the relay's code.
            ...(errorBody === 'ErrorBody'
              ? [
                  {
                    type: 'object',
                    properties: { error: { type: 'object', properties: { code: { enum: codes } } } },
                  },
                ]
              : []),
          ],
        },
      },
    },
  };
}

function requestBodyOf(body: NonNullable<ApiRoute['requestBody']>): JsonSchema {
  const schema = { schema: schemaRef(body.schema) };
  return {
    required: true,
    ...(body.description === undefined ? {} : { description: body.description }),
    content: {
      ...Object.fromEntries((body.contentTypes ?? ['application/json']).map((type) => [type, schema])),
      ...Object.fromEntries(
        (body.rawContentTypes ?? []).map((type) => [
          type,
          { schema: { type: 'string', contentMediaType: type } },
        ]),
      ),
    },
  };
}

function operationOf(route: ApiRoute, parameters: string[], operationId: string): JsonSchema {
  const responses: Record<string, JsonSchema> = {};
  for (const [status, response] of Object.entries(route.responses))
    responses[status] = successResponse(response);
  const byStatus = new Map<number, ErrorCatalogEntry[]>();
  for (const entry of errorsIn(route.errors))
    byStatus.set(entry.status, [...(byStatus.get(entry.status) ?? []), entry]);
  for (const [status, errors] of [...byStatus.entries()].sort(([a], [b]) => a - b))
    responses[String(status)] = errorResponse(status, errors, route.errorBody ?? 'ErrorBody');
  return {
    operationId,
    summary: route.summary,
    ...(route.description === undefined ? {} : { description: route.description }),
    security: securityOf(route),
    ...(parameters.length === 0 && (route.parameters ?? []).length === 0
      ? {}
      : {
          parameters: [
            ...parameters.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
            ...(route.parameters ?? []).map((parameter) => ({
              name: parameter.name,
              in: parameter.in,
              description: parameter.description,
              required: parameter.required ?? false,
              schema: parameter.schema ?? { type: 'string' },
            })),
          ],
        }),
    ...(route.requestBody === undefined ? {} : { requestBody: requestBodyOf(route.requestBody) }),
    responses,
  };
}

export function buildOpenApiDocument(options: OpenApiOptions = {}): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const routePrefix = options.routePrefix ?? hostSettings().routePrefix;
  for (const [name, route] of Object.entries(options.routes ?? httpRoutes)) {
    const { path, parameters } = openApiPath(route.route, routePrefix);
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operationOf(route, parameters, name) };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'm365-mail-relay',
      version: options.version ?? '0.1.0',
      description:
        'Send mail as Microsoft 365 mailboxes through Exchange Online SMTP AUTH with OAuth2. Errors always carry a stable error.code; docs/troubleshooting.md lists each with its cause and fix.',
    },
    ...(options.serverUrl === undefined ? {} : { servers: [{ url: options.serverUrl }] }),
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(componentSchemas).map(([name, schema]) => [name, schema()])),
      securitySchemes,
    },
  };
}
