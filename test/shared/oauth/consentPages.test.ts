import { describe, expect, it } from 'vitest';
import { renderConsentOutcome } from '../../../shared/oauth/consentPages.ts';

describe('consent pages', () => {
  it('escapes everything the identity provider or the sign-in echoed', () => {
    const declined = renderConsentOutcome(
      {
        kind: 'identity_error',
        mailbox: 'reports@contoso.com',
        error: 'access_denied"><img src=x onerror=alert(1)>',
        description: 'AADSTS65004: <script>alert(document.cookie)</script>',
        aadsts: 65004,
      },
      'request-1',
    );
    expect(declined.status).toBe(400);
    expect(declined.html).not.toMatch(/<script|<img/);
    expect(declined.html).toContain('&lt;script&gt;alert(document.cookie)&lt;/script&gt;');
    expect(declined.html).toContain('accept the SMTP.Send permission');

    const wrongAccount = renderConsentOutcome(
      {
        kind: 'wrong_account',
        mailbox: 'reports@contoso.com',
        signedInAs: '<b>mallory</b>@contoso.com',
      },
      'request-2',
    );
    expect(wrongAccount.status).toBe(409);
    expect(wrongAccount.html).toContain('You signed in as &lt;b&gt;mallory&lt;/b&gt;@contoso.com');
  });
});
