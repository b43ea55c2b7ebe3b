import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { buildOpenApiDocument } from '../shared/api/openApi.ts';
import { withErrors } from './httpEdge.ts';

/** GET /api/openapi.json: the API description, generated from the schemas that validate requests. */
export function createOpenApiHandler(build: typeof buildOpenApiDocument = buildOpenApiDocument) {
  let document: ReturnType<typeof buildOpenApiDocument> | undefined;
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    document ??= build();
    // The server is wherever this request reached: the Function App's host name or localhost:7071.
    return {
      status: 200,
      jsonBody: { ...document, servers: [{ url: new URL(request.url).origin }] },
      headers: { 'cache-control': 'public, max-age=300' },
    };
  });
}

export const openapi = createOpenApiHandler();

app.http('openapi', { route: 'openapi.json', methods: ['GET'], authLevel: 'anonymous', handler: openapi });
