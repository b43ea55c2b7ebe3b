import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
import '../../functions/compatibleApis.ts';
import { functionApp } from '../../functions/register.ts';
import { compatibleProviders, httpRoutes } from '../../shared/api/routes.ts';
import { RelayError } from '../../shared/errors.ts';

/**
 * What every compatible API shares, checked over real HTTP: even when the relay cannot start (a bad
 * setting), the answer is in the provider's own error shape, which its SDK can read, and not the relay's.
 */
let host: DevHost;

// Each provider's request, as its SDK would send it, and the key of its error body.
const requests = {
  sendgrid: {
    path: '/api/sendgrid/v3/mail/send',
    headers: { authorization: 'Bearer SG.key', 'content-type': 'application/json' },
    body: '{}',
    errorShape: (body: Record<string, unknown>) => Array.isArray(body.errors),
  },
  resend: {
    path: '/api/resend/emails',
    headers: { authorization: 'Bearer re_key', 'content-type': 'application/json' },
    body: '{}',
    errorShape: (body: Record<string, unknown>) => typeof body.name === 'string' && body.statusCode === 500,
  },
  postmark: {
    path: '/email',
    headers: { 'x-postmark-server-token': 'key', 'content-type': 'application/json' },
    body: '{}',
    errorShape: (body: Record<string, unknown>) => typeof body.ErrorCode === 'number',
  },
  mailgun: {
    path: '/api/mailgun/v3/contoso.com/messages',
    headers: {
      authorization: `Basic ${Buffer.from('api:key').toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'from=alerts%40contoso.com',
    errorShape: (body: Record<string, unknown>) => Object.keys(body).join() === 'message',
  },
} as const;

beforeAll(async () => {
  host = await startDevHost({
    functionApp,
    runtime: async () => {
      throw new RelayError('relay_misconfigured', { message: 'RELAY_TENANT_ID: is required' });
    },
    port: 0,
    triggers: false,
  });
});

afterAll(async () => {
  await host?.close();
});

describe('the compatible APIs', () => {
  it('are the four providers, each served where its SDK posts', () => {
    expect(new Map([...compatibleProviders()].map(([name, { path }]) => [name, path]))).toEqual(
      new Map([
        ['sendgrid', '/api/sendgrid/v3/mail/send'],
        ['resend', '/api/resend/emails'],
        ['postmark', '/email'],
        ['mailgun', '/api/mailgun/v3/{domain}/messages'],
      ]),
    );
  });

  it('are anonymous to the Functions host, each with the caller key where its SDK carries its API key', () => {
    // An SDK cannot send a function key, so the caller key is these routes' only key.
    const keys = Object.fromEntries(
      Object.entries(httpRoutes)
        .filter(([, route]) => 'compatibleApi' in route)
        .map(([name, route]) => [name, `${route.authLevel} ${String(route.callerKey)}`]),
    );
    expect(keys).toEqual({
      sendgridSend: 'anonymous bearerCallerKey',
      resendSend: 'anonymous bearerCallerKey',
      postmarkSend: 'anonymous postmarkServerToken',
      mailgunSend: 'anonymous basicCallerKey',
    });
  });

  it.each(Object.entries(requests))(
    '%s answers a relay that cannot start in its own error shape',
    async (_name, request) => {
      const response = await fetch(`${host.origin}${request.path}`, {
        method: 'POST',
        headers: request.headers,
        body: request.body,
      });
      expect(response.status).toBe(500);
      const body = (await response.json()) as Record<string, unknown>;
      expect(request.errorShape(body), JSON.stringify(body)).toBe(true);
      expect(body.error, 'not the relay’s own error body').toBeUndefined();
      expect(JSON.stringify(body)).toContain('RELAY_TENANT_ID');
    },
  );
});
