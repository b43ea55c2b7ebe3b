import type { RelayConfig } from '../config.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import { parseSendRequest } from '../message.ts';
import type { Relay } from '../relay.ts';
import type { AlertChannel } from './healthAlerts.ts';
import { type MailboxHealthStore, problemStates } from './mailboxHealth.ts';

/**
 * RELAY_ALERT_EMAIL: each alert also goes out as a plain-text mail through the relay's own pipeline (limits
 * included), from a configured mailbox that is healthy right now and is not the one the alert is about,
 * app-only mailboxes first (they need no sign-in that could be the thing failing). With none healthy the
 * mail cannot go, and the webhook is the only channel; the failure is logged.
 */
export const alertCaller = { name: 'relay-alerts', senders: [] as string[] };

export function alertMailChannel(options: {
  to: string;
  relay: Relay;
  health: MailboxHealthStore;
  directory: MailboxDirectory;
  limits: RelayConfig['limits'];
}): AlertChannel {
  return {
    name: `mail to ${options.to}`,
    async deliver(alert) {
      const records = await options.health.readAll();
      const candidates = [...options.directory.listed()]
        .sort((left, right) => (left.mode === right.mode ? 0 : left.mode === 'app' ? -1 : 1))
        .filter(
          (rule) =>
            rule.address !== alert.about &&
            !problemStates.has(options.health.stateOf(rule.address, records.get(rule.address))),
        );
      const from = candidates[0]?.address;
      if (from === undefined) throw new Error('no healthy configured mailbox to send the alert from');
      const request = parseSendRequest(
        { from, to: options.to, subject: alert.subject, text: alert.text, priority: 'high' },
        options.limits,
      );
      await options.relay.send({ caller: { ...alertCaller, senders: [from] }, sender: from, request });
    },
  };
}
