import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestCertificate } from './testCertificate.ts';

/** The plumbing the HTTPS peers share: a loopback listener, body reading, JSON answers and a prompt close. */

/** A JSON response body. */
export type JsonObject = Record<string, unknown>;

export type RequestHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

export interface RunningHttpsServer {
  /** `https://localhost:PORT`: the certificate names localhost, and MSAL wants a host name authority. */
  origin: string;
  port: number;
  close(): Promise<void>;
}

export async function startHttpsServer(
  certificate: TestCertificate,
  handler: RequestHandler,
): Promise<RunningHttpsServer> {
  const server = https.createServer({ key: certificate.key, cert: certificate.cert }, (request, response) => {
    handler(request, response).catch((error: unknown) => {
      // A peer bug must surface in the test as a failed request, not as an unhandled rejection.
      if (!response.headersSent) {
        sendJson(response, 500, { error: 'peer_failure', error_description: String(error) });
      } else {
        response.destroy();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    origin: `https://localhost:${port}`,
    port,
    async close() {
      const closed = once(server, 'close');
      server.close();
      // fetch (undici) and the Azure SDK keep connections alive; without this close() waits for their timeout.
      server.closeAllConnections();
      await closed;
    },
  };
}

export async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    ...headers,
  });
  response.end(payload);
}

export function sendHtml(response: ServerResponse, status: number, html: string): void {
  response.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
  });
  response.end(html);
}

/** Waits without blocking the event loop, used only to imitate a slow remote service. */
export function delay(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
