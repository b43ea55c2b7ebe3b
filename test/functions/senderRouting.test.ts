import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { connectMailbox } from '../support/connectMailbox.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Send As and Send on Behalf through RELAY_SENDER_ROUTES, app-only and delegated, against an SMTP peer that
 * checks after DATA, as Exchange does, that the signed-in mailbox holds the right on the From address.
 */
const relay = 'relay@contoso.com';
const assistant = 'assistant@contoso.com';
const teamKey = 'caller-key-team-0123456789';
const relayOnlyKey = 'caller-key-relay-only-0123456789';

/** Each routed From address, the mailbox that signs in for it, how, and in which mode. */
const routes = [
  { from: 'team@contoso.com', signIn: relay, relation: 'sendAs', mode: 'app' },
  { from: 'board@contoso.com', signIn: relay, relation: 'sendOnBehalf', mode: 'app' },
  { from: 'helpdesk@contoso.com', signIn: assistant, relation: 'sendAs', mode: 'delegated' },
  { from: 'ceo@contoso.com', signIn: assistant, relation: 'sendOnBehalf', mode: 'delegated' },
] as const;

let harness: RelayHarness;

async function post(body: unknown, apiKey = teamKey) {
  const { context } = capturingContext();
  const response = await bindHttp(send, harness.runtime)(
    jsonRequest('http://localhost:7071/api/send', body, { 'x-relay-key': apiKey }),
    context,
  );
  return { status: response.status, body: response.jsonBody as Record<string, unknown> };
}

const message = (from: string) => ({
  from: { address: from, name: 'Contoso Team' },
  to: 'customer@fabrikam.com',
  cc: 'lead@contoso.com',
  bcc: 'audit@contoso.com',
  subject: 'Your ticket',
  text: 'Resolved.',
});

beforeAll(async () => {
  harness = await startRelayHarness({
    settings: {
      RELAY_MAILBOXES: JSON.stringify([
        { address: relay, mode: 'app' },
        { address: assistant, mode: 'delegated' },
      ]),
      RELAY_SENDER_ROUTES: JSON.stringify(
        routes.map(({ from, signIn, relation }) => ({ from, signIn: [signIn], relation })),
      ),
    },
    callers: [
      { name: 'team-app', apiKey: teamKey, senders: routes.map((route) => route.from) },
      { name: 'relay-only-app', apiKey: relayOnlyKey, senders: [relay] },
    ],
  });
  await connectMailbox(harness, assistant);
});

afterAll(async () => {
  await harness?.close();
});

beforeEach(async () => {
  await harness.freshSmtp();
  harness.smtp.revokeSendRights();
});

describe('sender routes', () => {
  it.each(routes)(
    '$relation for $from signs in as $signIn ($mode) and keeps From, Sender and envelope as Exchange requires',
    async ({ from, signIn, relation, mode }) => {
      if (relation === 'sendAs') harness.smtp.grantSendAs(signIn, from);
      else harness.smtp.grantSendOnBehalf(signIn, from);

      const response = await post(message(from));

      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ sender: signIn, from, relation });
      const [received] = await harness.smtp.waitForMessages(1);
      expect(received?.authUser).toBe(signIn);
      expect(received?.envelopeFrom).toBe(signIn);
      expect(received?.envelopeTo.sort()).toEqual(
        ['audit@contoso.com', 'customer@fabrikam.com', 'lead@contoso.com'].sort(),
      );
      const token = harness.identity.issuedAccessTokens.get(received?.accessToken ?? '');
      expect(token?.username).toBe(mode === 'delegated' ? signIn : undefined);
      const parsed = await simpleParser(received?.raw ?? Buffer.alloc(0));
      expect(parsed.from?.value).toEqual([{ address: from, name: 'Contoso Team' }]);
      expect(parsed.headers.get('sender')).toEqual(
        relation === 'sendOnBehalf'
          ? expect.objectContaining({ value: [{ address: signIn, name: '' }] })
          : undefined,
      );
      expect(parsed.headers.has('bcc')).toBe(false);
    },
  );

  it.each(routes)(
    'a refused $relation for $from names $signIn as the trustee and the command that grants it',
    async ({ from, signIn, relation }) => {
      const response = await post(message(from));

      expect(response.status).toBe(502);
      const error = response.body.error as {
        code: string;
        message: string;
        remedy: string;
        details: unknown;
      };
      expect(error.code).toBe('send_as_denied');
      expect(error.message).toContain(
        `${signIn} sending ${relation === 'sendAs' ? 'as' : 'on behalf of'} ${from}`,
      );
      expect(error.remedy).toContain(
        relation === 'sendAs'
          ? `Add-RecipientPermission -Identity '${from}' -Trustee '${signIn}' -AccessRights SendAs`
          : `Set-Mailbox -Identity '${from}' -GrantSendOnBehalfTo @{Add='${signIn}'}`,
      );
      expect(error.details).toMatchObject({ from, signedInAs: signIn, relation, smtpCode: 554 });
      expect(harness.smtp.messages).toHaveLength(0);
      expect(harness.smtp.sendAsRefusals).toEqual([expect.objectContaining({ authUser: signIn, from })]);
    },
  );

  it('authorizes the caller on the From address recipients see, not on the mailbox that signs in', async () => {
    harness.smtp.grantSendAs(relay, 'team@contoso.com');

    const refused = await post(message('team@contoso.com'), relayOnlyKey);

    expect(refused.status).toBe(403);
    expect((refused.body.error as { code: string }).code).toBe('sender_not_allowed');
    expect(harness.smtp.connectionCount).toBe(0);
  });

  it('sends an unrouted sign-in mailbox as itself, with no Sender header', async () => {
    const response = await post({ ...message(relay), from: relay }, relayOnlyKey);

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ sender: relay, from: relay, relation: 'self' });
    const [received] = await harness.smtp.waitForMessages(1);
    const parsed = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(parsed.headers.has('sender')).toBe(false);
    expect(received?.envelopeFrom).toBe(relay);
  });
});
