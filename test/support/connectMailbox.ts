import type { ConsentOutcome } from '../../shared/oauth/consentFlow.ts';
import type { Runtime } from '../../shared/runtime.ts';
import type { IdentityPeer } from '../peers/identityPeer.ts';
import { submitSignInForm } from '../peers/signInPage.ts';

/**
 * Connects a delegated mailbox the way an administrator's browser does, without the browser: the relay's
 * consent start, the identity peer's sign-in form submitted as the mailbox's user, and the relay's callback
 * with the browser-binding cookie. The browser itself is covered by test/functions/delegatedConsent.test.ts.
 * The user is registered at the identity peer the first time; later sign-ins are the same user (the same
 * object id), unless `recreatedUser` asks for a user deleted and created again under the address.
 */
export interface ConsentParties {
  identity: IdentityPeer;
  /** The relay instance whose consent flow is used. */
  runtime: Runtime;
}

export async function connectMailbox(
  parties: ConsentParties,
  mailbox: string,
  options: { recreatedUser?: boolean } = {},
): Promise<void> {
  if (options.recreatedUser === true || parties.identity.userNamed(mailbox) === undefined)
    parties.identity.registerUser({ username: mailbox });
  const outcome = await completeConsent(parties.runtime, mailbox);
  if (outcome.kind !== 'connected')
    throw new Error(`${mailbox} was not connected: ${JSON.stringify(outcome)}`);
}

/** One consent round trip for a user the identity peer knows, whatever its outcome. */
export async function completeConsent(runtime: Runtime, mailbox: string): Promise<ConsentOutcome> {
  const started = await runtime.consent.start(mailbox);
  const redirect = await submitSignInForm(started.authorizeUrl, { username: mailbox });
  return runtime.consent.complete(
    redirect.searchParams,
    new Map([[started.cookie.name, started.cookie.value]]),
  );
}
