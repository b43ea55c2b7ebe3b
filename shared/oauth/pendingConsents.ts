import { timingSafeEqual } from 'node:crypto';
import { sha256 } from '../sha256.ts';
import type { StateTable } from '../state/stateTable.ts';

/**
 * A consent that was started and not yet completed: which mailbox, the nonce, and a hash of the
 * browser-binding cookie, in the shared state table (the callback may reach another instance than the
 * start did). The row is named by a hash of the state, so the state itself is stored nowhere, and it holds
 * nothing that redeems a code: the PKCE verifier is derived from the cookie only the browser has
 * (consentFlow.ts). The row expires with the consent (the timer's housekeeping removes what nobody
 * finished), and the callback deletes it with its ETag before redeeming the code, so of two callbacks
 * racing on two instances exactly one is accepted.
 */
export const pendingConsentLifetimeSeconds = 600;

export interface PendingConsent {
  mailbox: string;
  nonce: string;
  browserBindingSha256: string;
  expiresAt: number;
}

export type TakeResult =
  | { status: 'accepted'; pending: PendingConsent }
  | { status: 'unknown' | 'expired' | 'other_browser' };

export interface PendingConsents {
  save(state: string, pending: PendingConsent): Promise<void>;
  /** Checks the state and the browser binding, then deletes the row: a state is accepted once. */
  take(state: string, browserBinding: string): Promise<TakeResult>;
}

export function pendingConsentKey(state: string): string {
  return sha256(state).slice(0, 40);
}

export function createPendingConsents(state: StateTable, now: () => number = Date.now): PendingConsents {
  return {
    async save(consentState, pending) {
      const inserted = await state.insert(
        'consent',
        pendingConsentKey(consentState),
        pending,
        pending.expiresAt,
      );
      // 256 random bits do not collide; a second insert of one state would be a bug worth hearing about.
      if (inserted === undefined) throw new Error('a consent with this state exists already');
    },
    async take(consentState, browserBinding) {
      const key = pendingConsentKey(consentState);
      const row = await state.read<PendingConsent>('consent', key);
      if (row === undefined) return { status: 'unknown' };
      if (row.value.expiresAt <= now()) {
        await state.remove('consent', key, row.etag);
        return { status: 'expired' };
      }
      // A wrong cookie does not consume the state: the browser that started the consent may still finish it.
      if (!sameHex(sha256(browserBinding), row.value.browserBindingSha256))
        return { status: 'other_browser' };
      if (!(await state.remove('consent', key, row.etag))) return { status: 'unknown' };
      return { status: 'accepted', pending: row.value };
    },
  };
}

function sameHex(left: string, right: string): boolean {
  const a = Buffer.from(left, 'hex');
  const b = Buffer.from(right, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
