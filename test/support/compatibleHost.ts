import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
// Imported for their registrations: the development host serves them over real HTTP to the providers' SDKs.
import '../../functions/compatibleApis.ts';
import '../../functions/send.ts';
import '../../functions/sendStatus.ts';
import { functionApp } from '../../functions/register.ts';
import type { ReceivedMessage } from '../peers/smtpPeer.ts';
import { type Azurite, startAzurite } from './azurite.ts';
import { type HarnessOptions, type RelayHarness, startRelayHarness } from './relayHarness.ts';

/**
 * The relay's compatible APIs (SendGrid, Resend, Postmark, Mailgun) served by the development host on
 * loopback, wired to the usual peers, for tests that drive them with the providers' official SDKs.
 */
export interface CompatibleHost {
  harness: RelayHarness;
  host: DevHost;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** Every line the functions logged, to check that no key, token or body is ever logged. */
  logLines: string[];
  close(): Promise<void>;
}

/** A caller whose key is shaped as the SendGrid SDK expects (it warns unless a key starts with SG.). */
export const sdkCaller = {
  name: 'sdk-app',
  apiKey: 'SG.relay-test-key-0123456789abcdef',
  senders: ['alerts@contoso.com', '*@notify.contoso.com'],
};

/** A caller that may send only as billing@contoso.com, for the sender checks. */
export const billingCaller = {
  name: 'billing-app',
  apiKey: 're_billing_key_0123456789abcdef',
  senders: ['billing@contoso.com'],
};

export async function startCompatibleHost(options: HarnessOptions = {}): Promise<CompatibleHost> {
  const harness = await startRelayHarness({ callers: [sdkCaller, billingCaller], ...options });
  const logLines: string[] = [];
  const host = await startDevHost({
    functionApp,
    runtime: async () => harness.runtime,
    port: 0,
    triggers: false,
    log: (line) => logLines.push(line),
  });
  return {
    harness,
    host,
    origin: host.origin,
    logLines,
    async close() {
      await host.close();
      await harness.close();
    },
  };
}

/** A received message as a test compares it: envelope, headers and parts, parsed by mailparser (cid: links kept as sent). */
export async function parsedMessage(message: ReceivedMessage) {
  return {
    envelopeFrom: message.envelopeFrom,
    envelopeTo: message.envelopeTo,
    mail: await simpleParser(message.raw, { keepCidLinks: true }),
  };
}

/**
 * One relay for a test file: started before its tests (with Azurite when `storage`, for idempotency and
 * the queue), given fresh SMTP records before each, closed after. Returns the running relay.
 */
export function useCompatibleHost(
  options: HarnessOptions & { storage?: boolean } = {},
): () => CompatibleHost {
  let relay: CompatibleHost | undefined;
  let azurite: Azurite | undefined;
  beforeAll(async () => {
    const { storage, ...harness } = options;
    if (storage === true) azurite = await startAzurite();
    relay = await startCompatibleHost({
      ...harness,
      settings: {
        ...harness.settings,
        ...(azurite === undefined ? {} : { RELAY_STORAGE_CONNECTION: azurite.connectionString }),
      },
    });
  });
  afterAll(async () => {
    await relay?.close();
    await azurite?.stop();
  });
  beforeEach(async () => {
    await relay?.harness.freshSmtp();
  });
  return () => {
    if (relay === undefined) throw new Error('the relay is started in beforeAll');
    return relay;
  };
}

/** What an SDK call rejected with, for a test that expects it to fail. */
export async function failureOf<Failure>(send: Promise<unknown>): Promise<Failure> {
  try {
    await send;
  } catch (error) {
    return error as Failure;
  }
  throw new Error('the SDK resolved; a failure was expected');
}

/**
 * The message every provider's test sends in its own API's shape, so each shows the same mail arriving:
 * names, cc, bcc, reply-to, both bodies, a PDF (with a byte that is not ASCII) and an inline PNG.
 */
export const diskAlert = {
  from: { address: 'alerts@contoso.com', name: 'Contoso Alerts' },
  to: [
    { address: 'ops@contoso.com', name: 'Ops Team' },
    { address: 'oncall@fabrikam.com', name: '' },
  ],
  cc: { address: 'lead@contoso.com', name: '' },
  bcc: 'audit@contoso.com',
  replyTo: { address: 'helpdesk@contoso.com', name: 'Help Desk' },
  subject: 'Disk full on db-01 — 97 %',
  text: 'sda1 is at 97 %.',
  html: (chartId: string) => `<p>sda1 is at <b>97 %</b>.</p><img src="cid:${chartId}">`,
  report: Buffer.from('%PDF-1.7\n% relay test attachment \u00ff\n', 'latin1'),
  chart: Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
  ticket: 'INC-1234',
};

/** An address as mail headers write it: `Name <address>`, or the bare address when it has no name. */
export function mailboxText({ address, name }: { address: string; name: string }): string {
  return name === '' ? address : `${name} <${address}>`;
}

/**
 * Checks that the disk alert arrived as sent, with the chart inline under `chartId` and the report under
 * `reportName`; returns the parsed message for the provider's own checks (its tags, its answer's id).
 */
export async function expectDiskAlertDelivered(
  received: ReceivedMessage | undefined,
  {
    chartId,
    reportName = 'report.pdf',
    extraTo = [],
  }: { chartId: string; reportName?: string; extraTo?: string[] },
) {
  if (received === undefined) throw new Error('nothing arrived');
  const { envelopeFrom, envelopeTo, mail } = await parsedMessage(received);
  const to = [...diskAlert.to, ...extraTo.map((address) => ({ address, name: '' }))];
  expect(envelopeFrom).toBe(diskAlert.from.address);
  expect([...envelopeTo].sort()).toEqual(
    [...to.map((entry) => entry.address), diskAlert.cc.address, diskAlert.bcc].sort(),
  );
  expect(mail.from?.value).toEqual([diskAlert.from]);
  expect(mail.to && !Array.isArray(mail.to) ? mail.to.value : []).toEqual(to);
  expect(mail.cc && !Array.isArray(mail.cc) ? mail.cc.value : []).toEqual([diskAlert.cc]);
  // Bcc recipients are in the envelope only.
  expect(mail.headers.get('bcc')).toBeUndefined();
  expect(received.raw.toString('latin1')).not.toContain(diskAlert.bcc);
  expect(mail.replyTo?.value).toEqual([diskAlert.replyTo]);
  expect(mail.subject).toBe(diskAlert.subject);
  expect(mail.text?.trim()).toBe(diskAlert.text);
  expect(mail.html).toBe(diskAlert.html(chartId));
  expect(mail.attachments).toHaveLength(2);
  const report = mail.attachments.find((file) => file.filename === reportName);
  const chart = mail.attachments.find((file) => file.contentId === `<${chartId}>`);
  expect(report?.contentType).toBe('application/pdf');
  expect(report?.content.equals(diskAlert.report)).toBe(true);
  expect(chart?.contentType).toBe('image/png');
  expect(chart?.content.equals(diskAlert.chart)).toBe(true);
  expect(mail.headers.get('x-ticket')).toBe(diskAlert.ticket);
  return mail;
}
