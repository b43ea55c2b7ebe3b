import { HttpRequest } from '@azure/functions';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkMailbox } from '../../functions/checkMailbox.ts';
import { bindHttp } from '../../functions/register.ts';
import type { ConnectionCheckReport } from '../../shared/diagnostics/connectionCheck.ts';
import { startSmtpPeer } from '../peers/smtpPeer.ts';
import { createTestCertificate } from '../peers/testCertificate.ts';
import { testMailbox } from '../support/connectionTest.ts';
import { capturingContext, type RelayHarness, startRelayHarness } from '../support/relayHarness.ts';

let harness: RelayHarness;

const outcomes = (report: ConnectionCheckReport) =>
  report.steps.map((step) => `${step.step}:${step.outcome}`);

beforeAll(async () => {
  harness = await startRelayHarness();
});

afterAll(async () => {
  await harness?.close();
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('POST /api/mailboxes/{address}/test', () => {
  it('passes every step, shows the certificate chain, and sends nothing unless asked', async () => {
    const report = await testMailbox(harness, 'alerts@contoso.com');
    expect(report.ok).toBe(true);
    expect(outcomes(report)).toEqual([
      'token:ok',
      'tcp_connect:ok',
      'session_slot:ok',
      'starttls:ok',
      'auth_xoauth2:ok',
    ]);
    const tls = report.steps.find((step) => step.step === 'starttls');
    expect(((tls?.detail?.certificateChain ?? []) as unknown[]).length).toBeGreaterThan(0);
    expect(harness.smtp.authAttempts.filter((attempt) => attempt.accepted)).toHaveLength(1);
    await harness.smtp.waitForNoOpenConnections();
    expect(harness.smtp.messages).toHaveLength(0);
    expect(JSON.stringify(report)).not.toContain(harness.smtp.authAttempts[0]?.accessToken ?? 'none');
  });

  it('sends one test message when given sendTo', async () => {
    const report = await testMailbox(harness, 'alerts@contoso.com', { sendTo: 'ops@contoso.com' });
    expect(outcomes(report)).toContain('test_message:ok');
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.envelopeTo).toEqual(['ops@contoso.com']);
    expect(received?.authUser).toBe('alerts@contoso.com');
  });

  it('names disabled SMTP AUTH with its remedy and skips the rest', async () => {
    harness.smtp.replyNext({
      stage: 'auth',
      code: 535,
      message: '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.',
    });
    const report = await testMailbox(harness, 'alerts@contoso.com', { sendTo: 'ops@contoso.com' });
    expect(report.ok).toBe(false);
    expect(outcomes(report)).toEqual([
      'token:ok',
      'tcp_connect:ok',
      'session_slot:ok',
      'starttls:ok',
      'auth_xoauth2:failed',
      'test_message:skipped',
    ]);
    const auth = report.steps.find((step) => step.step === 'auth_xoauth2');
    expect(auth?.error).toMatchObject({
      code: 'smtp_auth_disabled',
      remedy: expect.stringContaining('Set-CASMailbox'),
    });
    expect(harness.smtp.messages).toHaveLength(0);
  });

  it('reports a wrong client secret at the token step with its AADSTS code', async () => {
    const broken = await startRelayHarness({ storeClientSecret: false });
    try {
      await broken.secrets.setSecret(broken.config.identity.clientSecretName, 'stale-secret-value');
      const report = await testMailbox(broken, 'alerts@contoso.com');
      expect(outcomes(report)).toEqual([
        'token:failed',
        'tcp_connect:skipped',
        'session_slot:skipped',
        'starttls:skipped',
        'auth_xoauth2:skipped',
      ]);
      expect(report.steps[0]?.error?.code).toBe('client_secret_invalid');
      expect(report.steps[0]?.error?.message).toContain('AADSTS7000215');
      expect(broken.smtp.connectionCount).toBe(0);
    } finally {
      await broken.close();
    }
  });

  it('reports a closed port at the TCP step with the firewall remedy', async () => {
    const closed = await startRelayHarness({ settings: { RELAY_SMTP_PORT: '9' } });
    try {
      const report = await testMailbox(closed, 'alerts@contoso.com');
      expect(outcomes(report)).toEqual([
        'token:ok',
        'tcp_connect:failed',
        'session_slot:skipped',
        'starttls:skipped',
        'auth_xoauth2:skipped',
      ]);
      expect(report.steps[1]?.error?.remedy).toMatch(/Allow outbound TCP 9/);
    } finally {
      await closed.close();
    }
  });

  it('reports an untrusted certificate at the STARTTLS step with the CA remedy', async () => {
    const proxyCertificate = await createTestCertificate({ commonName: 'inspecting-proxy' });
    const proxied = await startSmtpPeer({ certificate: proxyCertificate });
    const untrusted = await startRelayHarness({ settings: { RELAY_SMTP_PORT: String(proxied.port) } });
    try {
      const report = await testMailbox(untrusted, 'alerts@contoso.com');
      expect(outcomes(report)).toEqual([
        'token:ok',
        'tcp_connect:ok',
        'session_slot:ok',
        'starttls:failed',
        'auth_xoauth2:skipped',
      ]);
      expect(report.steps[3]?.error).toMatchObject({
        code: 'smtp_certificate_untrusted',
        remedy: expect.stringContaining('RELAY_SMTP_EXTRA_CA'),
      });
    } finally {
      await untrusted.close();
      await proxied.close();
    }
  });

  it('refuses an invalid mailbox address with 400', async () => {
    const request = new HttpRequest({
      method: 'POST',
      url: 'http://localhost:7071/api/mailboxes/nope/test',
      params: { address: 'nope' },
    });
    const { context } = capturingContext('mailboxTest');
    const response = await bindHttp(checkMailbox, harness.runtime)(request, context);
    expect(response.status).toBe(400);
  });

  it.each(['null', '[]', '"x"'])('answers a body of %s with 400, not 500', async (text) => {
    const request = new HttpRequest({
      method: 'POST',
      url: 'http://localhost:7071/api/mailboxes/alerts%40contoso.com/test',
      params: { address: 'alerts@contoso.com' },
      headers: { 'content-type': 'application/json' },
      body: { string: text },
    });
    const { context } = capturingContext('mailboxTest');
    const response = await bindHttp(checkMailbox, harness.runtime)(request, context);
    expect(response.status).toBe(400);
    expect(harness.smtp.connectionCount).toBe(0);
  });
});
