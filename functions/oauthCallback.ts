import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { ensureRelayError } from '../shared/errors.ts';
import { consentCallbackUrl } from '../shared/mailboxes.ts';
import {
  type ConsentPage,
  describeOutcome,
  htmlPageHeaders,
  renderConsentOutcome,
  renderFailurePage,
} from '../shared/oauth/consentPages.ts';
import { parseCookieHeader } from '../shared/oauth/cookies.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/**
 * GET /api/oauth/callback: where Microsoft sends the browser back with a code (anonymous, as a redirect
 * URI must be). Answers with a small HTML page for a person; logs only the outcome, never the query.
 */
export async function oauthCallback(
  request: HttpRequest,
  runtime: Runtime,
  context: InvocationContext,
): Promise<HttpResponseInit> {
  const { consent, config } = runtime;
  const state = request.query.get('state');
  const clearCookie: HttpResponseInit['cookies'] =
    state === null || state === ''
      ? []
      : [
          {
            name: consent.cookieName(state),
            value: '',
            path: new URL(consentCallbackUrl(config.delegated.publicBaseUrl)).pathname,
            maxAge: 0,
            httpOnly: true,
          },
        ];
  try {
    const outcome = await consent.complete(request.query, parseCookieHeader(request.headers.get('cookie')));
    if (outcome.kind === 'exchange_failed') {
      const { failure } = outcome;
      context.warn(
        `oauth callback -> exchange_failed for ${outcome.mailbox}: ${failure.code}: ${failure.message}`,
      );
    } else context.log(`oauth callback -> ${outcome.kind} (${describeOutcome(outcome)})`);
    return pageResponse(renderConsentOutcome(outcome, context.invocationId), clearCookie);
  } catch (error) {
    return failurePage(error, context, clearCookie);
  }
}

function failurePage(
  error: unknown,
  context: InvocationContext,
  cookies: HttpResponseInit['cookies'] = [],
): HttpResponseInit {
  const relayError = ensureRelayError(error);
  // The page names only the code and this request id; the detail (often a setting) goes to the log.
  context.warn(`oauth callback failed: ${relayError.code}: ${relayError.message}`);
  return pageResponse(renderFailurePage(relayError, context.invocationId), cookies);
}

function pageResponse(page: ConsentPage, cookies: HttpResponseInit['cookies']): HttpResponseInit {
  return {
    status: page.status,
    body: page.html,
    headers: htmlPageHeaders(),
    cookies,
  };
}

// A browser lands here: even a relay that cannot start answers with a page, not a JSON body.
registerHttp('oauthCallback', oauthCallback, {
  onRuntimeError: (error, context) => failurePage(error, context),
});
