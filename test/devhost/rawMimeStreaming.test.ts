import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
import '../../functions/openapi.ts';
import '../../functions/send.ts';
import { functionApp } from '../../functions/register.ts';
import { sharedTestCertificate } from '../peers/testCertificate.ts';
import { type RelayHarness, startRelayHarness } from '../support/relayHarness.ts';

/**
 * The development host streams request bodies as the Functions host does in HTTP streaming mode: a raw MIME
 * message reaches SMTP DATA while the client is still sending it. The SMTP server here is a bare smtp-server
 * that says when the first DATA bytes arrive; the client holds back the end of its body until then, so the
 * send can only complete if the body was never held whole.
 */
let harness: RelayHarness;
let host: DevHost;
let smtp: SMTPServer;
let dataStarted: Promise<void>;
const delivered: Buffer[] = [];

beforeAll(async () => {
  const certificate = await sharedTestCertificate();
  let signalStart: () => void = () => {};
  dataStarted = new Promise((resolve) => {
    signalStart = resolve;
  });
  smtp = new SMTPServer({
    secure: false,
    key: certificate.key,
    cert: certificate.cert,
    authMethods: ['XOAUTH2'],
    disableReverseLookup: true,
    logger: false,
    onAuth: (auth, _session, callback) => callback(null, { user: auth.username }),
    onData(stream, _session, callback) {
      stream.once('data', () => signalStart());
      stream.on('data', (chunk: Buffer) => delivered.push(chunk));
      stream.on('end', () => callback(null));
    },
  });
  smtp.listen(0, '127.0.0.1');
  await once(smtp.server, 'listening');
  harness = await startRelayHarness({
    settings: { RELAY_SMTP_PORT: String((smtp.server.address() as AddressInfo).port) },
  });
  host = await startDevHost({ functionApp, runtime: async () => harness.runtime, port: 0, triggers: false });
});

afterAll(async () => {
  await host?.close();
  await harness?.close();
  await new Promise<void>((resolve) => (smtp ? smtp.close(() => resolve()) : resolve()));
});

describe('the development host in HTTP streaming mode', () => {
  it('streams a raw MIME body to SMTP DATA before the client has sent its end', async () => {
    const head = [
      'From: alerts@contoso.com',
      'To: ops@contoso.com',
      'Subject: Streamed',
      '',
      ...Array.from({ length: 2000 }, (_, line) => `line ${line} ${'x'.repeat(60)}`),
      '',
    ].join('\r\n');
    const tail = 'the last line, sent only after the SMTP server saw the first\r\n';
    const request = http.request(`${host.origin}/api/send`, {
      method: 'POST',
      headers: { 'content-type': 'message/rfc822', 'x-relay-key': 'caller-key-alerts-0123456789' },
    });
    const answered = once(request, 'response') as Promise<[http.IncomingMessage]>;
    request.write(head);
    // Chunked: no Content-Length, so nothing tells the host the size in advance.
    await dataStarted;
    request.end(tail);

    const [response] = await answered;
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    expect(response.statusCode).toBe(200);
    expect(body).toMatchObject({ sender: 'alerts@contoso.com', accepted: ['ops@contoso.com'] });
    const message = Buffer.concat(delivered).toString('utf8');
    expect(message.endsWith(`line 1999 ${'x'.repeat(60)}\r\n${tail}`)).toBe(true);
  });

  it('answers a refused sender 403 while a large body is still uploading, on a connection that stays usable', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (body: string) =>
      new Promise<number>((resolve, reject) => {
        const request = http.request(`${host.origin}/api/send`, {
          method: 'POST',
          agent,
          headers: { 'content-type': 'message/rfc822', 'x-relay-key': 'caller-key-alerts-0123456789' },
        });
        request.on('error', reject);
        request.on('response', (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        });
        request.end(body);
      });
    const refused = `From: ceo@contoso.com\r\nTo: ops@contoso.com\r\n\r\n${`${'x'.repeat(76)}\r\n`.repeat(30_000)}`;
    expect(await post(refused)).toBe(403);
    expect(await post('From: alerts@contoso.com\r\nTo: ops@contoso.com\r\n\r\nsecond\r\n')).toBe(200);
    agent.destroy();
  });

  it('still serves GET requests (no body) and refuses an empty JSON body by name', async () => {
    const document = await fetch(`${host.origin}/api/openapi.json`);
    expect(document.status).toBe(200);
    expect(((await document.json()) as { openapi?: string }).openapi).toMatch(/^3\./);

    const empty = await fetch(`${host.origin}/api/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-relay-key': 'caller-key-alerts-0123456789' },
    });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
  });
});
