import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/**
 * GET /api/oauth/start?mailbox=<address>: sends the browser to Microsoft's sign-in for a delegated mailbox.
 * Protected by the function key: only administrators start a connection.
 */
export async function oauthStart(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const started = await runtime.consent.start(request.query.get('mailbox'));
  return {
    status: 302,
    headers: {
      location: started.authorizeUrl,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
    },
    cookies: [
      {
        name: started.cookie.name,
        value: started.cookie.value,
        path: started.cookie.path,
        maxAge: started.cookie.maxAgeSeconds,
        httpOnly: true,
        secure: started.cookie.secure,
        // Lax: sent on the top-level redirect back from login.microsoftonline.com, not on cross-site subrequests.
        sameSite: 'Lax',
      },
    ],
  };
}

registerHttp('oauthStart', oauthStart);
