import { simpleParser } from 'mailparser';
import { type DevHost, startDevHost } from '../../devhost/devHost.ts';
// Imported for their registrations: the development host serves them over real HTTP to the providers' SDKs.
import '../../functions/compatibleApis.ts';
import '../../functions/send.ts';
import '../../functions/sendStatus.ts';
import { functionApp } from '../../functions/register.ts';
import type { ReceivedMessage } from '../peers/smtpPeer.ts';
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
