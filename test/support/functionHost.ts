import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Cookie, HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { capturingContext } from './relayHarness.ts';

/**
 * A small stand-in for the Functions host on loopback, for tests that need a real browser: it turns each
 * node http request into `new HttpRequest(...)`, calls the registered handler for its route, and writes
 * the HttpResponseInit back (status, headers, cookies, body). Routes are added after start, because the
 * relay's configuration needs this server's origin first.
 */
export type HostedHandler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

export interface FunctionHost {
  /** `http://127.0.0.1:PORT`: what RELAY_PUBLIC_BASE_URL points at. */
  origin: string;
  /** Routes as the host exposes them, e.g. `/api/oauth/start`. */
  route(path: string, handler: HostedHandler): void;
  /** Every log line the handlers wrote. */
  logLines: string[];
  close(): Promise<void>;
}

function serializeCookie(cookie: Cookie): string {
  return [
    `${cookie.name}=${cookie.value}`,
    ...(cookie.path === undefined ? [] : [`Path=${cookie.path}`]),
    ...(cookie.maxAge === undefined ? [] : [`Max-Age=${cookie.maxAge}`]),
    ...(cookie.httpOnly ? ['HttpOnly'] : []),
    ...(cookie.secure ? ['Secure'] : []),
    ...(cookie.sameSite === undefined ? [] : [`SameSite=${cookie.sameSite}`]),
  ].join('; ');
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startFunctionHost(): Promise<FunctionHost> {
  const routes = new Map<string, HostedHandler>();
  const logLines: string[] = [];
  let origin = '';

  async function handle(incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
    const url = new URL(incoming.url ?? '/', origin);
    const handler = routes.get(url.pathname);
    if (handler === undefined) {
      outgoing.writeHead(404, { 'content-type': 'text/plain' }).end('no such function');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const body =
      incoming.method === 'GET' || incoming.method === 'HEAD' ? undefined : await readBody(incoming);
    const request = new HttpRequest({
      method: incoming.method ?? 'GET',
      url: url.toString(),
      headers,
      ...(body === undefined ? {} : { body: { string: body } }),
    });
    const { context, lines } = capturingContext(url.pathname);
    const response = await handler(request, context);
    logLines.push(...lines);
    const responseHeaders = new Headers(response.headers as ConstructorParameters<typeof Headers>[0]);
    const payload =
      response.jsonBody !== undefined
        ? JSON.stringify(response.jsonBody)
        : typeof response.body === 'string'
          ? response.body
          : '';
    if (response.jsonBody !== undefined) responseHeaders.set('content-type', 'application/json');
    const raw: Record<string, string | string[]> = Object.fromEntries(responseHeaders.entries());
    const cookies = (response.cookies ?? []).map(serializeCookie);
    if (cookies.length > 0) raw['set-cookie'] = cookies;
    outgoing.writeHead(response.status ?? 200, { ...raw, 'content-length': Buffer.byteLength(payload) });
    outgoing.end(payload);
  }

  const server = http.createServer((incoming, outgoing) => {
    handle(incoming, outgoing).catch((error: unknown) => {
      if (!outgoing.headersSent) outgoing.writeHead(500, { 'content-type': 'text/plain' });
      outgoing.end(`host failure: ${String(error)}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    logLines,
    route: (path, handler) => routes.set(path, handler),
    async close() {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}
