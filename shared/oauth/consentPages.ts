import { routePath } from '../api/routes.ts';
import type { RelayError } from '../errors.ts';
import type { ConsentOutcome, StateProblem } from './consentFlow.ts';

/**
 * The small HTML pages a person sees at the end of the consent flow. Everything echoed is HTML-escaped;
 * no page ever contains the authorization code, a token or a secret (only addresses, codes and times).
 * The callback is anonymous, so a failure page names the error code and the request id and nothing of the
 * configuration (setting names, vault), the log line with the same request id has the detail. The one
 * exception is a sign-in of another tenant: the person must see both tenant ids to sign in with the right
 * account, and the page only reaches the browser that started the consent (its state and cookie matched).
 */
export const consentPagePolicy =
  "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** The headers every HTML page of the relay is served with; `policy` is its Content-Security-Policy. */
export function htmlPageHeaders(policy: string = consentPagePolicy): Record<string, string> {
  return {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // A page's URL may carry a code or a key: never send it on as a Referer.
    'referrer-policy': 'no-referrer',
    'content-security-policy': policy,
    // frame-ancestors for browsers that predate CSP 2: no page of the relay is ever framed (clickjacking).
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
  };
}
export interface ConsentPage {
  status: number;
  html: string;
}

export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(status: number, title: string, paragraphs: string[]): ConsentPage {
  const body = paragraphs.map((text) => `    <p>${escapeHtml(text)}</p>`).join('\n');
  return {
    status,
    html: `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
  <body>
    <h1>${escapeHtml(title)}</h1>
${body}
  </body>
</html>
`,
  };
}

const stateProblems: Record<StateProblem, string> = {
  missing: 'The request has no state parameter, so it did not come from a consent this relay started.',
  unknown:
    'The state is unknown: it was already used, or it was not issued by this relay. Each sign-in link works once.',
  expired: 'The sign-in took longer than the 10 minutes a consent link is valid.',
  other_browser:
    'The sign-in finished in a different browser than the one that opened the start link (or its cookie was removed).',
};

/** Remedies for what Entra ID sends back to the redirect URI instead of a code. */
function identityRemedy(aadsts: number | undefined, error: string): string {
  if (aadsts === 65004 || error === 'access_denied')
    return 'The sign-in was cancelled or the permission was declined. Open the start link again and accept the SMTP.Send permission.';
  if (aadsts === 65001 || error === 'consent_required')
    return 'The app needs consent for SMTP.Send: an administrator can grant it under API permissions, then open the start link again.';
  if (aadsts === 50105)
    return 'The account is not assigned to the relay app: assign it under Enterprise applications > Users and groups.';
  return 'Open the start link again. If it happens again, look up the AADSTS code in Entra ID sign-in logs.';
}

export function renderConsentOutcome(outcome: ConsentOutcome, requestId: string): ConsentPage {
  switch (outcome.kind) {
    case 'connected':
      return page(200, 'Mailbox connected', [
        `${outcome.mailbox} is connected to the mail relay at ${outcome.connectedAt.toISOString()}.`,
        'You can close this window.',
      ]);
    case 'wrong_account':
      return page(409, 'Signed in with a different account', [
        `You signed in as ${outcome.signedInAs}, but this link connects ${outcome.mailbox}.`,
        'Nothing was stored. Open the start link again and sign in as the mailbox (use "Use another account").',
      ]);
    case 'wrong_tenant':
      return page(409, 'Signed in to a different tenant', [
        `You signed in with an account of tenant ${outcome.signedInTenant}, but the relay works for tenant ${outcome.configuredTenant}, so ${outcome.mailbox} was not connected.`,
        `Nothing was stored. Open the start link again and sign in as ${outcome.mailbox} with its account in tenant ${outcome.configuredTenant}.`,
      ]);
    case 'state_rejected':
      return page(400, 'This sign-in link cannot be used', [
        stateProblems[outcome.problem],
        `Nothing was stored. Open ${routePath('oauthStart')}?mailbox=<address> again to start over.`,
      ]);
    case 'identity_error':
      return page(400, 'Microsoft sign-in did not complete', [
        `Connecting ${outcome.mailbox} failed: ${outcome.error}.`,
        outcome.description.slice(0, 500),
        identityRemedy(outcome.aadsts, outcome.error),
      ]);
    case 'exchange_failed':
      return renderFailurePage(outcome.failure, requestId, outcome.mailbox);
  }
}

export function renderFailurePage(error: RelayError, requestId: string, mailbox?: string): ConsentPage {
  return page(error.status >= 400 ? error.status : 502, 'The mailbox could not be connected', [
    `${mailbox === undefined ? 'The sign-in' : `Connecting ${mailbox}`} failed with ${error.code}.`,
    `The relay's log has the details under request id ${requestId}: an administrator can fix the cause there, then open the start link again.`,
  ]);
}

/** One line for the log: what happened, for whom, never the code or the query. */
export function describeOutcome(outcome: ConsentOutcome): string {
  switch (outcome.kind) {
    case 'state_rejected':
      return outcome.problem;
    case 'identity_error':
      return `${outcome.mailbox} ${outcome.error}${outcome.aadsts === undefined ? '' : ` AADSTS${outcome.aadsts}`}`;
    case 'exchange_failed':
      return `${outcome.mailbox} ${outcome.failure.code}`;
    case 'wrong_tenant':
      return `${outcome.mailbox} signed in to tenant ${outcome.signedInTenant}, not ${outcome.configuredTenant}`;
    default:
      return outcome.mailbox;
  }
}
