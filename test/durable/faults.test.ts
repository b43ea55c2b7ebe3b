import type { HttpResponseInit } from '@azure/functions';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueueListener } from '../../devhost/queueListener.ts';
import { bindHttp, triggerHandler } from '../../functions/register.ts';
import { send } from '../../functions/send.ts';
import { sendQueued } from '../../functions/sendQueued.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { createKeyVaultSecretStore } from '../../shared/secrets/keyVaultSecretStore.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import type { SmtpDropPoint } from '../peers/smtpPeer.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import {
  appClientSecret,
  capturingContext,
  jsonRequest,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Fault injection against the real loopback SMTP server, identity provider and Key Vault: for each fault,
 * what a synchronous caller gets, and that the same fault on a queued message ends in exactly one delivery.
 */
const sendUrl = 'http://localhost:7071/api/send';
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };
const asyncHeaders = { ...alertsKey, prefer: 'respond-async' };
const message = { from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: 'Fault', text: 'body' };

let azurite: Azurite;
let harness: RelayHarness;
/** Every fault and its outcome, printed at the end for the report. */
const outcomes: string[] = [];

type Answer = Omit<HttpResponseInit, 'body'> & {
  body: Record<string, unknown>;
  headers: Record<string, string>;
};

async function post(runtime: Runtime, body: unknown, headers: Record<string, string>): Promise<Answer> {
  const { context } = capturingContext();
  const response = await bindHttp(send, runtime)(jsonRequest(sendUrl, body, headers), context);
  return {
    ...response,
    body: response.jsonBody as Record<string, unknown>,
    headers: (response.headers ?? {}) as Record<string, string>,
  };
}

const errorCode = (answer: Answer) => (answer.body.error as { code: string } | undefined)?.code;

/** Queues one message, runs the queue trigger until it is final, and returns its status. */
async function queueAndDrain(runtime: Runtime, subject: string) {
  const accepted = await post(runtime, { ...message, subject }, asyncHeaders);
  expect(accepted.status).toBe(202);
  const id = accepted.body.id as string;
  const driver = createQueueListener({
    functionName: 'sendQueued',
    queue: runtime.storage.sendQueue,
    poisonQueue: runtime.storage.poisonQueue,
    handler: triggerHandler(sendQueued, runtime),
    settings: { visibilityTimeoutSeconds: 0, maxPollingIntervalSeconds: 0.05 },
  });
  await driver.runUntil(async () => {
    const state = (await runtime.sendQueue.statuses.get('alerts-app', id))?.status.state;
    return state === 'sent' || state === 'failed';
  }, 40_000);
  const status = (await runtime.sendQueue.statuses.get('alerts-app', id))?.status;
  return { id, status };
}

async function deliveredWithSubject(subject: string): Promise<number> {
  let count = 0;
  for (const received of harness.smtp.messages) {
    const mail = await simpleParser(received.raw);
    if (mail.subject === subject) count += 1;
  }
  return count;
}

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      // One second, doubling: long enough for the identity provider's Retry-After to pass between attempts.
      RELAY_QUEUE_RETRY_BASE_SECONDS: '1',
      RELAY_SMTP_TIMEOUT_SECONDS: '5',
    },
  });
});

afterAll(async () => {
  await harness?.close();
  await azurite?.stop();
  // The figures for the closing note: one line per fault.
  process.stdout.write(`\nFault injection outcomes:\n${outcomes.map((line) => `  ${line}`).join('\n')}\n`);
});

beforeEach(async () => {
  await harness.freshSmtp();
});

describe('SMTP faults', () => {
  it.each<[string, SmtpDropPoint]>([
    ['dropped at MAIL FROM (before DATA)', 'mail'],
    ['dropped in the middle of DATA', 'during-data'],
  ])('connection %s: sync 503 smtp_unreachable; queued retried and delivered once', async (label, point) => {
    harness.smtp.dropNext(point);
    const sync = await post(harness.runtime, message, alertsKey);
    expect(sync.status).toBe(503);
    expect(errorCode(sync)).toBe('smtp_unreachable');
    expect(sync.headers['Retry-After']).toBe('30');
    expect(harness.smtp.messages).toHaveLength(0);

    harness.smtp.dropNext(point);
    const subject = `queued ${point}`;
    const { status } = await queueAndDrain(harness.runtime, subject);
    expect(status).toMatchObject({ state: 'sent', attempts: 2 });
    expect(await deliveredWithSubject(subject)).toBe(1);
    expect(harness.smtp.messages).toHaveLength(1);
    outcomes.push(
      `connection ${label}: sync 503 smtp_unreachable; queued sent after 2 attempts, delivered 1`,
    );
  });

  it.each([
    ['421 at MAIL FROM', 'mail', 421, '4.7.0 Temporary server error, closing connection', 'smtp_transient'],
    ['451 after DATA', 'data', 451, '4.7.0 Temporary server error. Please try again later', 'smtp_transient'],
    ['432 4.3.2 at MAIL FROM', 'mail', 432, '4.3.2 Concurrent connections limit exceeded', 'smtp_throttled'],
  ] as const)(
    '%s: sync 503 with Retry-After; queued retried and delivered once',
    async (label, stage, code, text, expected) => {
      harness.smtp.replyNext({ stage, code, message: text });
      const sync = await post(harness.runtime, message, alertsKey);
      expect(sync.status).toBe(503);
      expect(errorCode(sync)).toBe(expected);
      expect(Number(sync.headers['Retry-After'])).toBeGreaterThan(0);

      harness.smtp.replyNext({ stage, code, message: text });
      const subject = `queued ${code}`;
      const { status } = await queueAndDrain(harness.runtime, subject);
      expect(status).toMatchObject({ state: 'sent', attempts: 2 });
      expect(await deliveredWithSubject(subject)).toBe(1);
      outcomes.push(`${label}: sync 503 ${expected}; queued sent after 2 attempts, delivered 1`);
    },
  );

  it('a server that stalls past the socket timeout: sync 503; queued retried and delivered once', async () => {
    harness.smtp.stallNext(2);
    const started = Date.now();
    const [sync, queued] = await Promise.all([
      post(harness.runtime, message, alertsKey),
      queueAndDrain(harness.runtime, 'queued stall'),
    ]);
    expect(sync.status).toBe(503);
    expect(errorCode(sync)).toBe('smtp_unreachable');
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_500);
    expect(queued.status?.state).toBe('sent');
    expect(await deliveredWithSubject('queued stall')).toBe(1);
    outcomes.push(
      `stall past the 5 s socket timeout: sync 503 smtp_unreachable; queued sent after ${queued.status?.attempts} attempts, delivered 1`,
    );
  }, 40_000);

  it('drop after the whole message but before 250: the relay retries with the same Message-ID (documented)', async () => {
    harness.smtp.dropNext('after-data');
    const { status } = await queueAndDrain(harness.runtime, 'queued after-data');
    expect(status).toMatchObject({ state: 'sent', attempts: 2 });
    // The server kept the first copy although the relay never heard 250: this is the one case that can
    // deliver twice, and both copies carry the same Message-ID so receivers and message trace can tell.
    const copies = harness.smtp.messages.map((received) => received.raw.toString());
    expect(copies).toHaveLength(2);
    const ids = await Promise.all(
      harness.smtp.messages.map(async (received) => (await simpleParser(received.raw)).messageId),
    );
    expect(ids[0]).toBe(status?.messageId);
    expect(ids[1]).toBe(ids[0]);
    outcomes.push('drop after DATA before 250: queued retried (at-least-once), 2 copies with one Message-ID');
  });
});

describe('identity and Key Vault faults', () => {
  async function freshRuntime(): Promise<Runtime> {
    // A new runtime has an empty token cache, so the next send must ask the identity provider.
    return createRuntime(harness.config, harness.secrets);
  }

  it('identity provider slow (2 s): the send waits and succeeds', async () => {
    const slow = await freshRuntime();
    harness.identity.setResponseDelay(2_000);
    try {
      const answer = await post(slow, message, alertsKey);
      expect(answer.status).toBe(200);
    } finally {
      harness.identity.setResponseDelay(0);
      slow.close();
    }
    outcomes.push('identity slow (2 s per token request): sync 200, delivered 1');
  });

  it('identity provider answers 503: sync 503 identity_unavailable; queued retried and delivered once', async () => {
    const sync = await freshRuntime();
    harness.identity.failNext({
      status: 503,
      error: 'temporarily_unavailable',
      error_description: 'AADSTS90033: A transient error has occurred. Please try again.',
      error_codes: [90033],
      retryAfterSeconds: 1,
      times: 2,
    });
    const answer = await post(sync, message, alertsKey);
    sync.close();
    expect(answer.status).toBe(503);
    expect(errorCode(answer)).toBe('identity_unavailable');

    const queued = await freshRuntime();
    harness.identity.failNext({
      status: 503,
      error: 'temporarily_unavailable',
      error_description: 'AADSTS90033: A transient error has occurred. Please try again.',
      error_codes: [90033],
      retryAfterSeconds: 1,
    });
    const { status } = await queueAndDrain(queued, 'queued identity 503');
    queued.close();
    expect(status?.state).toBe('sent');
    expect(await deliveredWithSubject('queued identity 503')).toBe(1);
    outcomes.push(
      `identity 503: sync 503 identity_unavailable; queued sent after ${status?.attempts} attempts, delivered 1`,
    );
  }, 40_000);

  it('identity provider down (nothing listening): sync 503 identity_unavailable, nothing sent', async () => {
    const down = await startRelayHarness({
      settings: {
        RELAY_STORAGE_CONNECTION: azurite.connectionString,
        RELAY_AUTHORITY_HOST: 'https://localhost:9',
      },
    });
    try {
      const answer = await post(down.runtime, message, alertsKey);
      expect(answer.status).toBe(503);
      expect(errorCode(answer)).toBe('identity_unavailable');
      expect(down.smtp.connectionCount).toBe(0);
    } finally {
      await down.close();
    }
    outcomes.push('identity down: sync 503 identity_unavailable, no SMTP connection');
  }, 40_000);

  describe('Key Vault', () => {
    let vault: KeyVaultPeer;
    let vaultRuntime: Runtime;

    beforeAll(async () => {
      vault = await startKeyVaultPeer({ authority: harness.identity.authority });
      vault.putSecretDirect(harness.config.identity.clientSecretName, appClientSecret);
    });

    afterAll(async () => {
      await vault?.close();
    });

    async function runtimeOnVault(): Promise<Runtime> {
      const store = await createKeyVaultSecretStore({
        vaultUrl: vault.vaultUrl,
        credential: {
          getToken: async () => ({ token: 'vault-access-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
        },
        clientOptions: { disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } },
      });
      vaultRuntime = createRuntime(harness.config, createCachedSecretStore(store, { ttlSeconds: 300 }));
      return vaultRuntime;
    }

    it.each([429, 503] as const)(
      'Key Vault answers %d: sync 503; queued retried and delivered once',
      async (code) => {
        const sync = await runtimeOnVault();
        vault.failNext({ status: code, retryAfterSeconds: 1, times: 1 });
        const answer = await post(sync, message, alertsKey);
        sync.close();
        expect(answer.status).toBe(503);
        const expected = code === 429 ? 'secret_store_throttled' : 'secret_store_unavailable';
        expect(errorCode(answer)).toBe(expected);
        expect(Number(answer.headers['Retry-After'])).toBeGreaterThan(0);

        const queued = await runtimeOnVault();
        vault.failNext({ status: code, retryAfterSeconds: 0, times: 1 });
        const subject = `queued vault ${code}`;
        const { status } = await queueAndDrain(queued, subject);
        queued.close();
        expect(status?.state).toBe('sent');
        expect(status?.attempts).toBe(2);
        expect(await deliveredWithSubject(subject)).toBe(1);
        outcomes.push(`Key Vault ${code}: sync 503 ${expected}; queued sent after 2 attempts, delivered 1`);
      },
    );
  });
});
