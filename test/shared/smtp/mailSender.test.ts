import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RelayError } from '../../../shared/errors.ts';
import { createMemorySessionSlots } from '../../../shared/limits/limitStores.ts';
import { createMailboxTransports, type MailboxTransports } from '../../../shared/smtp/mailboxTransports.ts';
import { createMailSender, type MailSender } from '../../../shared/smtp/mailSender.ts';
import type { MailboxTokenProvider, ReusableToken } from '../../../shared/tokens/accessToken.ts';
import { type RelayHarness, startRelayHarness } from '../../support/relayHarness.ts';

/**
 * A cold send asks for its token and opens the SMTP connection at the same time. The token provider here is
 * the relay's own (real MSAL against the identity peer), with its answer held back until the test lets it
 * through, so the order of events is seen without timing anything.
 */
let harness: RelayHarness;

beforeAll(async () => {
  harness = await startRelayHarness();
});

afterAll(async () => {
  await harness?.close();
});

interface HeldTokens {
  tokens: MailboxTokenProvider;
  release(): void;
  fail(error: Error): void;
}

function heldTokens(): HeldTokens {
  let release: () => void = () => undefined;
  let fail: (error: Error) => void = () => undefined;
  const gate = new Promise<void>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  gate.catch(() => undefined);
  const tokens: MailboxTokenProvider = async (mailbox, options): Promise<ReusableToken> => {
    await gate;
    return harness.runtime.tokens(mailbox, options);
  };
  return { tokens, release, fail };
}

let held: HeldTokens;
let transports: MailboxTransports;
let sender: MailSender;

beforeEach(async () => {
  await harness.freshSmtp();
  held = heldTokens();
  transports = createMailboxTransports(harness.config.smtp, held.tokens, createMemorySessionSlots());
  sender = createMailSender(harness.config.smtp, held.tokens);
});

/** As shared/relay.ts sends: prepare, then one of the mailbox's sessions. */
async function send(subject: string) {
  await sender.prepare('alerts@contoso.com');
  return transports.withSession('alerts@contoso.com', 5_000, (session) =>
    sender.send(
      'alerts@contoso.com',
      { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject, text: 'x' },
      session,
    ),
  );
}

describe('token and SMTP connection in parallel', () => {
  it('opens the SMTP connection while the token is still on its way, then delivers', async () => {
    const sending = send('overlapped');
    await expect.poll(() => harness.smtp.connectionCount).toBe(1);
    expect(harness.smtp.authAttempts).toHaveLength(0);
    held.release();
    const outcome = await sending;
    expect(outcome.accepted).toEqual(['ops@contoso.com']);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.raw.toString()).toContain('Subject: overlapped');
    await transports.closeAll();
  });

  it('fails with the identity error itself, sends nothing and gives the session up', async () => {
    const sending = send('never sent');
    await expect.poll(() => harness.smtp.connectionCount).toBe(1);
    const identityFailure = new RelayError('token_request_failed', {
      message: 'Entra ID refused the client.',
    });
    held.fail(identityFailure);
    await expect(sending).rejects.toBe(identityFailure);
    expect(harness.smtp.messages).toHaveLength(0);
    expect(harness.smtp.authAttempts).toHaveLength(0);
    await expect.poll(() => transports.liveSessions).toBe(0);
  });
});
