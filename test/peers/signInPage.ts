/**
 * The identity peer's sign-in page: what GET /authorize shows, and a fetch-based "browser" that fills it in.
 * The page keeps the authorize request's parameters in hidden fields so POST /authorize can issue the code.
 */

export interface SignInOptions {
  username: string;
  /** Presses "Cancel" instead: the peer redirects back with error=access_denied (AADSTS65004). */
  deny?: boolean;
}

function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('"', '&quot;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll("'", '&#39;');
}

function unescapeHtml(value: string): string {
  return value
    .replaceAll('&#39;', "'")
    .replaceAll('&gt;', '>')
    .replaceAll('&lt;', '<')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&');
}

/** The hidden fields the sign-in form carries from GET /authorize to POST /authorize. */
const SIGN_IN_FORM_FIELDS = [
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
  'scope',
  'nonce',
] as const;

export function renderSignInPage(action: string, query: URLSearchParams, problem?: string): string {
  const hiddenFields = SIGN_IN_FORM_FIELDS.filter((name) => query.has(name))
    .map((name) => `<input type="hidden" name="${name}" value="${escapeHtml(query.get(name) ?? '')}">`)
    .join('\n      ');
  const loginHint = query.get('login_hint') ?? query.get('username') ?? '';
  return `<!doctype html>
<html>
  <head><title>Sign in to your account</title><link rel="icon" href="data:,"></head>
  <body>
    ${problem ? `<p id="error" role="alert">${escapeHtml(problem)}</p>` : ''}
    <form method="post" action="${escapeHtml(action)}">
      ${hiddenFields}
      <label for="username">Email, phone, or Skype</label>
      <input type="email" id="username" name="username" value="${escapeHtml(loginHint)}">
      <button type="submit" id="sign-in">Sign in</button>
      <button type="submit" id="decline" name="deny" value="1">Cancel</button>
    </form>
  </body>
</html>
`;
}

/**
 * Drives the peer's sign-in page the way a browser would, with plain fetch: loads the authorize URL MSAL built
 * (getAuthCodeUrl), submits the form for `username` and returns the redirect target, which carries `code`,
 * `state` and `client_info` (or `error` after a deny).
 */
export async function submitSignInForm(authorizeUrl: string, options: SignInOptions): Promise<URL> {
  const page = await fetch(authorizeUrl);
  const html = await page.text();
  if (!page.ok) {
    throw new Error(`Sign-in page answered ${page.status}: ${html}`);
  }
  const action = /<form method="post" action="([^"]*)">/.exec(html)?.[1];
  if (action === undefined) {
    throw new Error(`No sign-in form in the page: ${html}`);
  }
  const form = new URLSearchParams();
  for (const [, name, value] of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    if (name !== undefined && value !== undefined) {
      form.set(name, unescapeHtml(value));
    }
  }
  form.set('username', options.username);
  if (options.deny) {
    form.set('deny', '1');
  }
  const submitted = await fetch(new URL(unescapeHtml(action), authorizeUrl), {
    method: 'POST',
    body: form,
    redirect: 'manual',
  });
  const location = submitted.headers.get('location');
  if (submitted.status !== 302 || location === null) {
    throw new Error(`Sign-in was not redirected (${submitted.status}): ${await submitted.text()}`);
  }
  return new URL(location);
}
