import type { MailboxDirectory } from '../mailboxes.ts';
import type { CredentialExpiry } from '../tokens/credentialExpiry.ts';
import { credentialWarningDays } from '../tokens/credentialExpiry.ts';
import {
  type MailboxHealthChange,
  type MailboxHealthRecord,
  type MailboxHealthStore,
  type MailboxState,
  problemStates,
} from './mailboxHealth.ts';

/**
 * Tells a person when mail is about to stop or has stopped, instead of waiting for someone to open
 * /api/status: a mailbox that needs a sign-in (with the link that fixes it), one that recovered, and an app
 * secret or certificate within 30 days of expiry. Each state is announced once over every instance: the
 * announcement is claimed in the mailbox's health row with its ETag before anything is sent, and given back
 * when no channel took it, so the timer's sweep on any instance tries again. When one channel took it and
 * another did not (the webhook answered 500, the mail went), giving the claim back would send it twice on
 * the channel that worked: the instance that claimed it owes it to the other channel and delivers it at its
 * next sweep, unless a later alert on the same mailbox or credential made it stale. That debt lives in this
 * instance's memory (bounded by the channels and the configured mailboxes), so it is lost if the instance
 * stops first; the alert still reached a person through the other channel. The texts hold addresses,
 * codes, dates and links, never a secret or a token.
 */
export interface Alert {
  subject: string;
  text: string;
  /** The mailbox the alert is about, so an alert mail is not sent through it. */
  about?: string;
}

/** An alert one channel missed while another took it, with the announcement it carries. */
interface OwedAlert {
  channel: AlertChannel;
  alert: Alert;
  /** The mailbox, or `credential`: a later alert on the same topic supersedes this one. */
  topic: string;
  /** The mailbox state or credential announcement it announced; stale once the stored one differs. */
  announced: string;
}

const credentialTopic = 'credential';

export interface AlertChannel {
  name: string;
  deliver(alert: Alert): Promise<void>;
}

export interface HealthAlerts {
  /** A mailbox's state changed (the health store's onChange): announced in the background. */
  mailboxChanged(change: MailboxHealthChange): void;
  /** Announces every configured mailbox's state that no alert has announced yet; returns how many. */
  sweep(): Promise<number>;
  /** Announces the credential's expiry once per state (valid, within 30 days, expired, unreadable). */
  credentialChecked(expiry: CredentialExpiry): Promise<void>;
  /** Resolves when the background announcements started so far have finished. */
  idle(): Promise<void>;
}

const webhookTimeoutMs = 10_000;

/**
 * A Teams workflow ("When a Teams webhook request is received") or a Slack incoming webhook: both take a
 * JSON body with a `text` field. The URL is the webhook's secret, so it is never logged.
 */
export function webhookChannel(url: string): AlertChannel {
  return {
    name: `webhook ${new URL(url).host}`,
    async deliver(alert) {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: `${alert.subject}\n\n${alert.text}` }),
        signal: AbortSignal.timeout(webhookTimeoutMs),
        redirect: 'error',
      });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`the webhook answered ${response.status}`);
    },
  };
}

export function createHealthAlerts(options: {
  health: MailboxHealthStore;
  directory: MailboxDirectory;
  channels: readonly AlertChannel[];
  log: (line: string) => void;
}): HealthAlerts {
  const { health, directory, channels } = options;
  const inFlight = new Set<Promise<void>>();
  const owed = new Map<string, OwedAlert>();
  const owedKey = (channel: AlertChannel, topic: string) => `${channel.name}\n${topic}`;

  async function deliverVia(channel: AlertChannel, alert: Alert): Promise<boolean> {
    try {
      await channel.deliver(alert);
      return true;
    } catch (error) {
      options.log(
        `alert via ${channel.name} failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      return false;
    }
  }

  /**
   * True when at least one channel took it (an unreachable mail mailbox must not silence the webhook); the
   * channels that did not are then owed it. Either way this alert supersedes what they were owed on its topic.
   */
  async function deliver(alert: Alert, topic: string, announced: string): Promise<boolean> {
    const missed: AlertChannel[] = [];
    for (const channel of channels) {
      owed.delete(owedKey(channel, topic));
      if (!(await deliverVia(channel, alert))) missed.push(channel);
    }
    const delivered = missed.length < channels.length;
    if (delivered)
      for (const channel of missed) owed.set(owedKey(channel, topic), { channel, alert, topic, announced });
    return delivered;
  }

  /** Delivers what this instance owes, unless the stored announcement moved on since. */
  async function settleOwed(records: Map<string, MailboxHealthRecord>): Promise<number> {
    if (owed.size === 0) return 0;
    const credentialAnnounced = [...owed.values()].some((debt) => debt.topic === credentialTopic)
      ? (await health.readCredential())?.announced
      : undefined;
    let delivered = 0;
    for (const [key, debt] of owed) {
      const current =
        debt.topic === credentialTopic ? credentialAnnounced : records.get(debt.topic)?.announced;
      if (current !== debt.announced) {
        owed.delete(key);
      } else if (await deliverVia(debt.channel, debt.alert)) {
        owed.delete(key);
        options.log(`alert sent via ${debt.channel.name}: ${debt.alert.subject}`);
        delivered += 1;
      }
    }
    return delivered;
  }

  async function announce(mailbox: string, state: MailboxState, record: MailboxHealthRecord | undefined) {
    const previous = record?.announced;
    // A mailbox that was never announced as a problem has nothing to recover from.
    if (!problemStates.has(state) && (previous === undefined || !problemStates.has(previous))) return false;
    if (channels.length === 0 || !(await health.claimAnnouncement(mailbox, state))) return false;
    const alert = mailboxAlert(mailbox, state, record, directory.consentStartUrl(mailbox));
    if (await deliver(alert, mailbox.toLowerCase(), state)) {
      options.log(`alert sent: ${alert.subject}`);
      return true;
    }
    await health.releaseAnnouncement(mailbox, state, previous).catch(() => undefined);
    return false;
  }

  function inBackground(work: Promise<unknown>): void {
    const tracked = work.then(
      () => undefined,
      (error: unknown) =>
        options.log(`alert failed: ${error instanceof Error ? error.message : String(error)}`),
    );
    inFlight.add(tracked);
    tracked.finally(() => inFlight.delete(tracked));
  }

  return {
    mailboxChanged(change) {
      inBackground(announce(change.mailbox, change.after, change.record));
    },
    async sweep() {
      if (channels.length === 0) return 0;
      const records = await health.readAll();
      let announced = await settleOwed(records);
      for (const rule of directory.listed()) {
        const record = records.get(rule.address);
        const state = health.stateOf(rule.address, record);
        if (record?.announced === state) continue;
        if (await announce(rule.address, state, record)) announced += 1;
      }
      return announced;
    },
    async credentialChecked(expiry) {
      if (channels.length === 0) return;
      const announcement = credentialAnnouncement(expiry);
      const previous = await health.claimCredentialAnnouncement(announcement);
      if (previous === false) return;
      // The first check of a valid credential, or one still valid: nothing to say.
      if (announcement === 'valid' && (previous === undefined || previous === 'valid')) return;
      const alert = credentialAlert(expiry, announcement);
      if (await deliver(alert, credentialTopic, announcement)) options.log(`alert sent: ${alert.subject}`);
      else await health.releaseCredentialAnnouncement(announcement, previous).catch(() => undefined);
    },
    async idle() {
      while (inFlight.size > 0) await Promise.all(inFlight);
    },
  };
}

/** One word per credential state: a new expiry date (a renewed secret) is a new state. */
function credentialAnnouncement(expiry: CredentialExpiry): string {
  if (expiry.daysLeft === undefined) return expiry.warning === undefined ? 'valid' : 'unknown';
  const day = expiry.expiresOn?.slice(0, 10) ?? '';
  if (expiry.daysLeft < 0) return `expired:${day}`;
  if (expiry.daysLeft < credentialWarningDays) return `expiring:${day}`;
  return 'valid';
}

function credentialAlert(expiry: CredentialExpiry, announcement: string): Alert {
  const what = `The mail relay's ${expiry.type}${expiry.secretName === undefined ? '' : ` (${expiry.secretName})`}`;
  if (announcement === 'valid') {
    return {
      subject: `Mail relay: the app credential is valid again`,
      text: `${what} is valid${expiry.expiresOn === undefined ? '' : ` until ${expiry.expiresOn.slice(0, 10)}`}.`,
    };
  }
  return {
    subject: announcement.startsWith('expiring')
      ? `Mail relay: the app credential expires in ${expiry.daysLeft} days`
      : 'Mail relay: the app credential needs attention',
    text: `${expiry.warning ?? `${what} needs attention.`} When it expires, every mailbox stops sending.`,
  };
}

function mailboxAlert(
  mailbox: string,
  state: MailboxState,
  record: MailboxHealthRecord | undefined,
  consentUrl: string,
): Alert {
  const error = record?.lastError;
  const cause =
    error === undefined
      ? ''
      : ` (${error.code}${error.aadsts === undefined ? '' : `, ${error.aadsts}`}: ${error.message})`;
  const signIn = `Sign in as ${mailbox} at ${consentUrl} (with the function key) to fix it.`;
  switch (state) {
    case 'needs_consent':
      return {
        about: mailbox,
        subject: `Mail relay: ${mailbox} needs a new sign-in`,
        text: `The relay can no longer send as ${mailbox}: its sign-in stopped working${cause}. ${signIn}`,
      };
    case 'not_connected':
      return {
        about: mailbox,
        subject: `Mail relay: ${mailbox} is not connected`,
        text: `${mailbox} is configured for delegated sending, but the relay holds no sign-in for it. ${signIn}`,
      };
    case 'disconnected':
      return {
        about: mailbox,
        subject: `Mail relay: ${mailbox} was disconnected`,
        text: `${mailbox} was disconnected at ${record?.disconnectedAt ?? 'an unknown time'}; sends as it are refused until it is connected again. ${signIn}`,
      };
    case 'failing':
      return {
        about: mailbox,
        subject: `Mail relay: ${mailbox} is failing`,
        text: `Sending as ${mailbox} fails${cause}.${error?.remedy === undefined ? '' : ` ${error.remedy}`}`,
      };
    default:
      return {
        about: mailbox,
        subject: `Mail relay: ${mailbox} recovered`,
        text: `${mailbox} is sending again (last success ${record?.lastSuccessAt ?? 'just now'}).`,
      };
  }
}
