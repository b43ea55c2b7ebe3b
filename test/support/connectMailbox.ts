import { submitSignInForm } from '../peers/signInPage.ts';
import type { RelayHarness } from './relayHarness.ts';

/**
 * Connects a delegated mailbox the way an administrator's browser does, without the browser: the relay's
 * consent start, the identity peer's sign-in form submitted as the mailbox's user, and the relay's callback
 * with the browser-binding cookie. The browser itself is covered by test/functions/delegatedConsent.test.ts.
 */
export async function connectMailbox(harness: RelayHarness, mailbox: string): Promise<void> {
  harness.identity.registerUser({ username: mailbox });
  const started = await harness.runtime.consent.start(mailbox);
  const redirect = await submitSignInForm(started.authorizeUrl, { username: mailbox });
  const outcome = await harness.runtime.consent.complete(
    redirect.searchParams,
    new Map([[started.cookie.name, started.cookie.value]]),
  );
  if (outcome.kind !== 'connected')
    throw new Error(`${mailbox} was not connected: ${JSON.stringify(outcome)}`);
}
