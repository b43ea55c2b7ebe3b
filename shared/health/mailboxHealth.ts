import type { MailboxMode } from '../config.ts';
import { errorCodes, isErrorCode } from '../errorCodes.ts';
import type { RelayError } from '../errors.ts';
import { type StateTable, updateState } from '../state/stateTable.ts';
import { requiresSignIn } from '../tokens/delegatedTokenSource.ts';

/**
 * What the relay last learned about each configured mailbox and about the app's credential, in the shared
 * state table (one row each), so every instance, /api/status, /api/health and the admin page see the same
 * thing. The timer's refresh, a consent, a disconnect and every send that meets a sign-in or credential
 * failure write it (the error table's `health` marks which codes count); a send that succeeds after a
 * recorded failure clears it. Each change of a mailbox's state is passed to `onChange` (the alerts).
 */
export type MailboxState =
  | 'app-only'
  | 'healthy'
  | 'not_connected'
  | 'disconnected'
  | 'needs_consent'
  | 'failing';

/** States in which the mailbox cannot send: they are problems for /api/health and alerts. */
export const problemStates: ReadonlySet<MailboxState> = new Set([
  'not_connected',
  'disconnected',
  'needs_consent',
  'failing',
]);

export interface MailboxHealthError {
  code: string;
  message: string;
  /** e.g. AADSTS700082 */
  aadsts?: string;
  remedy?: string;
  at: string;
}

export interface MailboxHealthRecord {
  mailbox: string;
  connectedAt?: string;
  /** Set by DELETE /api/mailboxes/{address}/connection; the next sign-in clears it. */
  disconnectedAt?: string;
  lastRefreshAt?: string;
  lastSuccessAt?: string;
  lastError?: MailboxHealthError;
  /** Only a new sign-in through /api/oauth/start can fix it. */
  needsConsent: boolean;
  /** The state the last alert announced (healthAlerts.ts), so each state is announced once. */
  announced?: MailboxState;
}

export interface CredentialHealthRecord {
  /** A token request failed because of the app's credential (wrong, expired or unreadable secret, ...). */
  lastError?: MailboxHealthError;
  /** What the last credential alert announced, e.g. `expiring:2027-01-01` (healthAlerts.ts). */
  announced?: string;
}

export interface MailboxHealthChange {
  mailbox: string;
  before: MailboxState;
  after: MailboxState;
  record: MailboxHealthRecord;
}

export interface MailboxHealthStore {
  read(mailbox: string): Promise<MailboxHealthRecord | undefined>;
  /** Every stored record, by mailbox (one query). */
  readAll(): Promise<Map<string, MailboxHealthRecord>>;
  stateOf(mailbox: string, record: MailboxHealthRecord | undefined): MailboxState;
  recordConnected(mailbox: string, at: Date): Promise<void>;
  recordDisconnected(mailbox: string, at: Date): Promise<void>;
  recordRefresh(mailbox: string, at: Date): Promise<void>;
  recordFailure(mailbox: string, at: Date, error: RelayError, needsConsent: boolean): Promise<void>;
  /** After a send: a failure marks the mailbox or the credential (by the error's code); a success clears a recorded failure. */
  recordSendOutcome(mailbox: string, error?: RelayError): Promise<void>;
  /**
   * Throws when a delegated mailbox was disconnected: sends stop at once on this instance and within
   * `connectionCheckSeconds` on every other, and a new sign-in lifts it at once everywhere. Storage
   * trouble never blocks a send here (the disconnect also emptied the token cache, so the mailbox cannot
   * sign in anyway).
   */
  assertNotDisconnected(mailbox: string, refuse: () => RelayError): Promise<void>;
  /** True for exactly one caller over every instance per state change: that caller announces it. */
  claimAnnouncement(mailbox: string, state: MailboxState): Promise<boolean>;
  /** Gives a claim back when its alert could not be delivered, so the next sweep tries again. */
  releaseAnnouncement(
    mailbox: string,
    state: MailboxState,
    previous: MailboxState | undefined,
  ): Promise<void>;
  readCredential(): Promise<CredentialHealthRecord | undefined>;
  claimCredentialAnnouncement(announcement: string): Promise<string | undefined | false>;
  releaseCredentialAnnouncement(announcement: string, previous: string | undefined): Promise<void>;
}

/** How stale this instance's view of another instance's disconnect may be. */
export const connectionCheckSeconds = 30;
const credentialKey = 'app';

export function createMailboxHealthStore(options: {
  state: StateTable;
  /** Configured mailboxes only get a record: a sender address a caller chose never creates a row. */
  modeOf: (mailbox: string) => MailboxMode | undefined;
  onChange?: (change: MailboxHealthChange) => void;
  /** Another instance connected the mailbox again: drop this one's cached token and token cache. */
  onReconnected?: (mailbox: string) => void;
  now?: () => number;
}): MailboxHealthStore {
  const { state } = options;
  const now = options.now ?? Date.now;
  // This instance's last view of each configured mailbox (bounded by the configuration) and the credential.
  const seen = new Map<string, { record: MailboxHealthRecord | undefined; at: number }>();
  let credentialSeen: { record: CredentialHealthRecord | undefined; at: number } | undefined;
  const keyOf = (mailbox: string) => mailbox.trim().toLowerCase();

  function stateOf(mailbox: string, record: MailboxHealthRecord | undefined): MailboxState {
    const mode = options.modeOf(keyOf(mailbox)) ?? 'app';
    if (mode === 'app') return record?.lastError === undefined ? 'app-only' : 'failing';
    if (record === undefined) return 'not_connected';
    if (record.disconnectedAt !== undefined) return 'disconnected';
    if (record.connectedAt === undefined && record.lastSuccessAt === undefined) return 'not_connected';
    if (record.needsConsent) return 'needs_consent';
    return record.lastError === undefined ? 'healthy' : 'failing';
  }

  async function read(mailbox: string): Promise<MailboxHealthRecord | undefined> {
    const key = keyOf(mailbox);
    const record = (await state.read<MailboxHealthRecord>('mailbox', key))?.value;
    if (options.modeOf(key) === undefined) return record;
    const previous = seen.get(key);
    seen.set(key, { record, at: now() });
    // Connected again on another instance: what this one keeps of the old sign-in is stale.
    if (
      previous !== undefined &&
      record?.connectedAt !== undefined &&
      record.connectedAt !== previous.record?.connectedAt
    )
      options.onReconnected?.(key);
    return record;
  }

  async function change(
    mailbox: string,
    next: (previous: MailboxHealthRecord | undefined) => MailboxHealthRecord | undefined,
  ): Promise<void> {
    const key = keyOf(mailbox);
    if (options.modeOf(key) === undefined) return;
    const { before, after } = await updateState<MailboxHealthRecord>(state, 'mailbox', key, (current) => {
      const value = next(current);
      return value === undefined ? undefined : { value };
    });
    seen.set(key, { record: after, at: now() });
    const beforeState = stateOf(key, before);
    const afterState = stateOf(key, after);
    if (after !== undefined && beforeState !== afterState)
      options.onChange?.({ mailbox: key, before: beforeState, after: afterState, record: after });
  }

  const errorOf = (error: RelayError, at: Date): MailboxHealthError => {
    const aadsts = (error.details as Record<string, unknown> | undefined)?.aadsts;
    return {
      code: error.code,
      message: error.message,
      ...(typeof aadsts === 'string' ? { aadsts } : {}),
      ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
      at: at.toISOString(),
    };
  };

  const success = (mailbox: string, at: Date, previous: MailboxHealthRecord | undefined) => ({
    ...previous,
    mailbox,
    lastSuccessAt: at.toISOString(),
    lastError: undefined,
    needsConsent: false,
  });

  function recordMailboxFailure(
    mailbox: string,
    at: Date,
    error: RelayError,
    needsConsent: boolean,
    extra: Partial<MailboxHealthRecord> = {},
  ): Promise<void> {
    return change(mailbox, (previous) =>
      // A disconnected mailbox fails on purpose; that is not news.
      previous?.disconnectedAt !== undefined
        ? undefined
        : { ...previous, ...extra, mailbox: keyOf(mailbox), lastError: errorOf(error, at), needsConsent },
    );
  }

  async function freshView(mailbox: string): Promise<MailboxHealthRecord | undefined> {
    const key = keyOf(mailbox);
    const known = seen.get(key);
    if (known !== undefined && now() - known.at < connectionCheckSeconds * 1000) return known.record;
    return read(key);
  }

  async function readCredential(): Promise<CredentialHealthRecord | undefined> {
    const record = (await state.read<CredentialHealthRecord>('credential', credentialKey))?.value;
    credentialSeen = { record, at: now() };
    return record;
  }

  async function credentialChange(
    next: (previous: CredentialHealthRecord | undefined) => CredentialHealthRecord | undefined,
  ): Promise<{ before: CredentialHealthRecord | undefined; after: CredentialHealthRecord | undefined }> {
    const result = await updateState<CredentialHealthRecord>(
      state,
      'credential',
      credentialKey,
      (current) => {
        const value = next(current);
        return value === undefined ? undefined : { value };
      },
    );
    credentialSeen = { record: result.after, at: now() };
    return result;
  }

  return {
    read,
    stateOf,
    async readAll() {
      const rows = await state.list<MailboxHealthRecord>('mailbox');
      return new Map(rows.map((row) => [row.key, row.value]));
    },
    async recordConnected(mailbox, at) {
      await change(mailbox, (previous) => ({
        ...success(keyOf(mailbox), at, previous),
        connectedAt: at.toISOString(),
        disconnectedAt: undefined,
      }));
    },
    async recordDisconnected(mailbox, at) {
      await change(mailbox, (previous) => ({
        ...previous,
        mailbox: keyOf(mailbox),
        disconnectedAt: at.toISOString(),
        lastError: undefined,
        needsConsent: false,
      }));
    },
    async recordRefresh(mailbox, at) {
      await change(mailbox, (previous) =>
        previous?.disconnectedAt !== undefined
          ? undefined
          : { ...success(keyOf(mailbox), at, previous), lastRefreshAt: at.toISOString() },
      );
    },
    async recordFailure(mailbox, at, error, needsConsent) {
      await recordMailboxFailure(mailbox, at, error, needsConsent, { lastRefreshAt: at.toISOString() });
    },
    async recordSendOutcome(mailbox, error) {
      const at = new Date(now());
      const marks =
        error !== undefined && isErrorCode(error.code) ? errorCodes[error.code].health : undefined;
      if (marks === 'credential') {
        await credentialChange((previous) => ({ ...previous, lastError: errorOf(error as RelayError, at) }));
        return;
      }
      if (marks === 'mailbox') {
        const failure = error as RelayError;
        await recordMailboxFailure(mailbox, at, failure, requiresSignIn(failure));
        return;
      }
      if (error !== undefined) return;
      // Success: only a recorded failure needs writing over, and this instance's view of it is recent.
      const [record, credential] = await Promise.all([
        options.modeOf(keyOf(mailbox)) === undefined ? undefined : freshView(mailbox),
        credentialSeen !== undefined && now() - credentialSeen.at < connectionCheckSeconds * 1000
          ? credentialSeen.record
          : readCredential(),
      ]);
      // A send on an access token issued before the sign-in died proves nothing about the sign-in: only a
      // new sign-in (recordConnected) or a refresh that worked (recordRefresh) clears needsConsent.
      if (record?.lastError !== undefined && record.needsConsent !== true)
        await change(mailbox, (previous) =>
          previous?.disconnectedAt !== undefined || previous?.needsConsent === true
            ? undefined
            : success(keyOf(mailbox), at, previous),
        );
      if (credential?.lastError !== undefined)
        await credentialChange((previous) =>
          previous === undefined ? undefined : { ...previous, lastError: undefined },
        );
    },
    async assertNotDisconnected(mailbox, refuse) {
      let record: MailboxHealthRecord | undefined;
      try {
        const known = seen.get(keyOf(mailbox));
        const recent = known !== undefined && now() - known.at < connectionCheckSeconds * 1000;
        record = recent ? known.record : await read(mailbox);
        // A refusal from memory reads again: a sign-in on another instance lifts it at once everywhere.
        if (recent && record?.disconnectedAt !== undefined) record = await read(mailbox);
      } catch {
        return;
      }
      if (record?.disconnectedAt !== undefined) throw refuse();
    },
    async claimAnnouncement(mailbox, announced) {
      let claimed = false;
      await updateState<MailboxHealthRecord>(state, 'mailbox', keyOf(mailbox), (current) => {
        claimed = false;
        if (current?.announced === announced || stateOf(mailbox, current) !== announced) return undefined;
        claimed = true;
        // A mailbox never connected has no row yet: the claim creates it.
        return { value: { ...(current ?? { mailbox: keyOf(mailbox), needsConsent: false }), announced } };
      });
      return claimed;
    },
    async releaseAnnouncement(mailbox, announced, previous) {
      await updateState<MailboxHealthRecord>(state, 'mailbox', keyOf(mailbox), (current) =>
        current?.announced !== announced ? undefined : { value: { ...current, announced: previous } },
      );
    },
    readCredential,
    async claimCredentialAnnouncement(announcement) {
      let previous: string | undefined | false = false;
      await credentialChange((current) => {
        previous = false;
        if (current?.announced === announcement) return undefined;
        previous = current?.announced;
        return { ...current, announced: announcement };
      });
      return previous;
    },
    async releaseCredentialAnnouncement(announcement, previous) {
      await credentialChange((current) =>
        current?.announced !== announcement ? undefined : { ...current, announced: previous },
      );
    },
  };
}
