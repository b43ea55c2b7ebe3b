import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { buildOpenApiDocument } from '../shared/api/openApi.ts';
import { registerRuntimeFreeHttp } from './register.ts';

let document: ReturnType<typeof buildOpenApiDocument> | undefined;

/**
 * GET /api/openapi.json: the API description, generated from the route table and the schemas that
 * validate requests. It needs no runtime, so it answers even while a setting is wrong.
 */
export async function openapi(request: HttpRequest): Promise<HttpResponseInit> {
  document ??= buildOpenApiDocument();
  // The server is wherever this request reached: the Function App's host name or localhost:7071.
  return {
    status: 200,
    jsonBody: { ...document, servers: [{ url: new URL(request.url).origin }] },
    headers: { 'cache-control': 'public, max-age=300' },
  };
}

registerRuntimeFreeHttp('openapi', openapi);
