import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from '@azure/functions';
import { ensureRelayError } from '../shared/errors.ts';
import { consentCallbackUrl } from '../shared/mailboxes.ts';
import { type ConsentPage, renderConsentOutcome, renderFailurePage } from '../shared/oauth/consentPages.ts';
import { parseCookieHeader } from '../shared/oauth/cookies.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';

/**
 * GET /api/oauth/callback: where Microsoft sends the browser back with a code (anonymous, as a redirect
 * URI must be). Answers with a small HTML page for a person; logs only the outcome, never the query.
 */
export function createOAuthCallbackHandler(runtime: () => Promise<Runtime>) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const state = request.query.get('state');
    let page: ConsentPage;
    let clearCookie: HttpResponseInit['cookies'] = [];
    try {
      const { consent, config } = await runtime();
      if (state !== null && state !== '') {
        clearCookie = [
          {
            name: consent.cookieName(state),
            value: '',
            path: new URL(consentCallbackUrl(config.delegated.publicBaseUrl)).pathname,
            maxAge: 0,
            httpOnly: true,
          },
        ];
      }
      const outcome = await consent.complete(request.query, parseCookieHeader(request.headers.get('cookie')));
      const detail =
        outcome.kind === 'state_rejected'
          ? outcome.problem
          : outcome.kind === 'identity_error'
            ? `${outcome.mailbox} ${outcome.error}${outcome.aadsts === undefined ? '' : ` AADSTS${outcome.aadsts}`}`
            : outcome.kind === 'exchange_failed'
              ? `${outcome.mailbox} ${outcome.failure.code}`
              : outcome.mailbox;
      context.log(`oauth callback -> ${outcome.kind} (${detail})`);
      page = renderConsentOutcome(outcome);
    } catch (error) {
      const relayError = ensureRelayError(error);
      context.warn(`oauth callback failed: ${relayError.code}: ${relayError.message}`);
      page = renderFailurePage(relayError);
    }
    return {
      status: page.status,
      body: page.html,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        // The URL carries the (already redeemed) code: never send it on as a Referer.
        'referrer-policy': 'no-referrer',
        'content-security-policy': "default-src 'none'",
        'x-content-type-options': 'nosniff',
      },
      cookies: clearCookie,
    };
  };
}

export const oauthCallback = createOAuthCallbackHandler(runtimeFromEnvironment);

app.http('oauthCallback', {
  route: 'oauth/callback',
  methods: ['GET'],
  authLevel: 'anonymous',
  handler: oauthCallback,
});
