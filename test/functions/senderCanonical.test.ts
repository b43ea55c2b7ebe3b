import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayHttpHandler } from '../../functions/httpEdge.ts';
import { bindHttp } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { createMailboxDirectory } from '../../shared/mailboxes.ts';
import { createSenderRouter } from '../../shared/senderRoutes.ts';
import {
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

// U+212A KELVIN SIGN: String.toLowerCase folds it to an ASCII `k`, so `\u212Aelvin@contoso.com` once passed
// a grant for kelvin@contoso.com while the envelope carried the Kelvin sign, another mailbox to Exchange.
const kelvinSign = '\u212A';
const kelvinKey = { 'x-relay-key': 'caller-key-kelvin-0123456789' };
let harness: RelayHarness;
let handler: RelayHttpHandler;

beforeAll(async () => {
  harness = await startRelayHarness({
    callers: [{ name: 'kelvin-app', apiKey: kelvinKey['x-relay-key'], senders: ['kelvin@contoso.com'] }],
  });
  handler = bindHttp(send, harness.runtime);
});

afterAll(async () => {
  await harness?.close();
});

async function post(from: string) {
  const { context, lines } = capturingContext();
  const response = await handler(
    jsonRequest(
      'http://localhost:7071/api/send',
      { from, to: 'ops@contoso.com', subject: 'Reactor', text: 'at 300 K' },
      kelvinKey,
    ),
    context,
  );
  return { status: response.status, body: response.jsonBody as { error?: { code: string } }, lines };
}

// The 403 for a Kelvin-sign sender is tested in test/functions/send.test.ts; these cover the other places an
// address is compared or keyed.
describe('sender addresses are compared by ASCII case only', () => {
  it('still lets the granted sender through in any ASCII case', async () => {
    const response = await post('KELVIN@Contoso.com');
    expect(response.status).toBe(200);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('kelvin@contoso.com');
  });

  it('routes and looks up mailboxes by the same canonical address', () => {
    const router = createSenderRouter(
      [{ from: 'kelvin@contoso.com', relation: 'sendAs', signIn: ['relay@contoso.com'] }],
      [{ address: 'relay@contoso.com', mode: 'app' }],
    );
    expect(router.route('Kelvin@CONTOSO.com').signIn).toEqual(['relay@contoso.com']);
    expect(router.route(`${kelvinSign}elvin@contoso.com`).relation).toBe('self');
    const directory = createMailboxDirectory(
      [{ address: 'kelvin@contoso.com', mode: 'delegated' }],
      'https://relay.example',
    );
    expect(directory.listedModeOf('KELVIN@contoso.com')).toBe('delegated');
    expect(directory.listedModeOf(`${kelvinSign}elvin@contoso.com`)).toBeUndefined();
  });
});
