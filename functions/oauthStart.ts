import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { withErrors } from './httpEdge.ts';

/**
 * GET /api/oauth/start?mailbox=<address>: sends the browser to Microsoft's sign-in for a delegated mailbox.
 * Protected by the function key: only administrators start a connection.
 */
export function createOAuthStartHandler(runtime: () => Promise<Runtime>) {
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const { consent } = await runtime();
    const started = await consent.start(request.query.get('mailbox'));
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
  });
}

export const oauthStart = createOAuthStartHandler(runtimeFromEnvironment);

app.http('oauthStart', {
  route: 'oauth/start',
  methods: ['GET'],
  authLevel: 'function',
  handler: oauthStart,
});
