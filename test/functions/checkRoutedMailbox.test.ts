import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionCheckReport } from '../../shared/diagnostics/connectionCheck.ts';
import { testMailbox as testAddress } from '../support/connectionTest.ts';
import {
  appClientId,
  appClientSecret,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * The connection test for an address that another mailbox signs in for, and what it reads from the app-only
 * token: the claims that explain Exchange's answers, and the RBAC for Applications union trap.
 */
const relay = 'relay@contoso.com';
const pool = ['relay1@contoso.com', 'relay2@contoso.com'];
let harness: RelayHarness;

const testMailbox = (address: string, body?: unknown) => testAddress(harness, address, body);

const outcomes = (report: ConnectionCheckReport) =>
  report.steps.map((step) => `${step.mailbox} ${step.step}:${step.outcome}`);

beforeAll(async () => {
  harness = await startRelayHarness({
    settings: {
      RELAY_MAILBOXES: JSON.stringify([relay, ...pool].map((address) => ({ address, mode: 'app' }))),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: 'team@contoso.com', signIn: [relay], relation: 'sendAs' },
        { from: 'ceo@contoso.com', signIn: [relay], relation: 'sendOnBehalf' },
        { from: '*@notify.contoso.com', signIn: pool, relation: 'sendAs' },
      ]),
    },
  });
});

afterAll(async () => {
  await harness?.close();
});

beforeEach(async () => {
  await harness.freshSmtp();
  harness.smtp.revokeSendRights();
});

describe('POST /api/mailboxes/{address}/test for a routed address', () => {
  it('tests the mailbox that signs in and names the right it needs on the address', async () => {
    const report = await testMailbox('team@contoso.com');

    expect(report).toMatchObject({ mailbox: 'team@contoso.com', ok: true, relation: 'sendAs' });
    expect(report.signIn).toEqual([
      {
        mailbox: relay,
        mode: 'app',
        requiredRight: {
          right: 'Send As on team@contoso.com',
          command: `Add-RecipientPermission -Identity 'team@contoso.com' -Trustee '${relay}' -AccessRights SendAs -Confirm:$false`,
        },
      },
    ]);
    expect(outcomes(report)).toEqual([
      `${relay} token:ok`,
      `${relay} tcp_connect:ok`,
      `${relay} session_slot:ok`,
      `${relay} starttls:ok`,
      `${relay} auth_xoauth2:ok`,
    ]);
    expect(harness.smtp.authAttempts.map((attempt) => attempt.user)).toEqual([relay]);
  });

  it('sends the test message with the routed From, so Exchange checks the right for real', async () => {
    harness.smtp.grantSendOnBehalf(relay, 'ceo@contoso.com');

    const granted = await testMailbox('ceo@contoso.com', { sendTo: 'ops@contoso.com' });

    expect(granted.ok).toBe(true);
    const [received] = await harness.smtp.waitForMessages(1);
    const parsed = await simpleParser(received?.raw ?? Buffer.alloc(0));
    expect(parsed.from?.value[0]?.address).toBe('ceo@contoso.com');
    expect(parsed.headers.get('sender')).toMatchObject({ value: [{ address: relay }] });
    expect(received?.authUser).toBe(relay);

    harness.smtp.revokeSendRights();
    const refused = await testMailbox('ceo@contoso.com', { sendTo: 'ops@contoso.com' });

    expect(refused.ok).toBe(false);
    const step = refused.steps.find((entry) => entry.step === 'test_message');
    expect(step?.error?.code).toBe('send_as_denied');
    expect(step?.error?.remedy).toContain(
      `Set-Mailbox -Identity 'ceo@contoso.com' -GrantSendOnBehalfTo @{Add='${relay}'}`,
    );
  });

  it('tests every mailbox of a pool, one after the other', async () => {
    const report = await testMailbox('builds@notify.contoso.com');

    expect(report.signIn.map((entry) => entry.mailbox)).toEqual(pool);
    expect(outcomes(report).filter((line) => line.endsWith('auth_xoauth2:ok'))).toEqual(
      pool.map((mailbox) => `${mailbox} auth_xoauth2:ok`),
    );
  });
});

describe('what the connection test reads from the app-only token', () => {
  it('reports aud, tid and appid, and no warning when Exchange RBAC alone grants the mailboxes', async () => {
    const report = await testMailbox(relay);

    const token = report.steps.find((step) => step.step === 'token');
    expect(token?.detail?.claims).toEqual({
      aud: 'https://outlook.office365.com',
      tid: harness.identity.tenantId,
      appid: appClientId,
    });
    expect(report.warnings).toEqual([]);
    expect(JSON.stringify(report)).not.toContain(harness.smtp.authAttempts[0]?.accessToken ?? 'none');
  });

  it('warns that an Entra SMTP.SendAsApp grant cancels the RBAC scope', async () => {
    harness.identity.registerClient({
      clientId: appClientId,
      clientSecret: appClientSecret,
      appRoles: ['SMTP.SendAsApp'],
    });
    try {
      await harness.runtime.tokens(relay, { forceRefresh: true });
      const report = await testMailbox(relay);

      const token = report.steps.find((step) => step.step === 'token');
      expect(token?.detail?.claims).toMatchObject({ roles: ['SMTP.SendAsApp'] });
      expect(report.ok).toBe(true);
      expect(report.warnings).toHaveLength(1);
      expect(report.warnings[0]).toContain('union of Entra consent and RBAC for Applications');
      expect(report.warnings[0]).toContain('remove the API permission');
    } finally {
      harness.identity.registerClient({ clientId: appClientId, clientSecret: appClientSecret });
      await harness.runtime.tokens(relay, { forceRefresh: true });
    }
  });

  it('says a refused app-only login may be Exchange permission cache that has not caught up', async () => {
    harness.smtp.replyNext({ stage: 'auth', code: 535, message: '5.7.3 Authentication unsuccessful' });

    const report = await testMailbox(relay);

    const login = report.steps.find((step) => step.step === 'auth_xoauth2');
    expect(login?.error?.code).toBe('smtp_auth_rejected');
    expect(login?.error?.remedy).toContain('in the last 2 hours');
    expect(login?.error?.remedy).toContain('Test-ServicePrincipalAuthorization');
  });
});
