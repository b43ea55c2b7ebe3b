import { timingSafeEqual } from 'node:crypto';
import type { CachedSecretStore } from '../secrets/cachedSecretStore.ts';
import { mailboxTag } from '../secrets/secretNames.ts';
import { sha256 } from '../sha256.ts';

/**
 * A consent that was started and not yet completed: which mailbox, the PKCE verifier, the nonce, and a
 * hash of the browser-binding cookie. Kept in the secret store, because the callback may reach a different
 * Function instance than the start did and the store is what every instance shares (the verifier is a
 * secret too). The record is named by a hash of the state, so the state itself is stored nowhere; it is
 * deleted before the code is redeemed, so a state is accepted once. Two callbacks racing on two instances
 * could both read it, but Entra redeems an authorization code once (AADSTS54005), so only one can connect.
 */
export const pendingConsentPurpose = 'oauth-pending';
export const pendingConsentLifetimeSeconds = 600;

export interface PendingConsent {
  mailbox: string;
  codeVerifier: string;
  nonce: string;
  browserBindingSha256: string;
  expiresAt: number;
}

export type TakeResult =
  | { status: 'accepted'; pending: PendingConsent }
  | { status: 'unknown' | 'expired' | 'other_browser' };

export interface PendingConsents {
  save(state: string, pending: PendingConsent): Promise<void>;
  /** Checks the state and the browser binding, then deletes the record: a state is accepted once. */
  take(state: string, browserBinding: string | undefined): Promise<TakeResult>;
  /** Deletes consents nobody completed; returns how many. */
  deleteExpired(): Promise<number>;
}

export function pendingConsentName(state: string): string {
  return `${pendingConsentPurpose}-${sha256(state).slice(0, 40)}`;
}

export function createPendingConsents(
  secrets: CachedSecretStore,
  now: () => number = Date.now,
): PendingConsents {
  // Callbacks on this instance that are between reading and deleting a record.
  const taking = new Set<string>();

  return {
    async save(state, pending) {
      await secrets.setSecret(pendingConsentName(state), JSON.stringify(pending), {
        tags: {
          [mailboxTag]: pending.mailbox,
          purpose: pendingConsentPurpose,
          expiresAt: new Date(pending.expiresAt).toISOString(),
        },
        contentType: 'application/json',
      });
    },
    async take(state, browserBinding) {
      const name = pendingConsentName(state);
      if (taking.has(name)) return { status: 'unknown' };
      taking.add(name);
      try {
        // Never from memory: another instance may have consumed it since.
        secrets.invalidate(name);
        const record = await secrets.getSecret(name);
        if (record === undefined) return { status: 'unknown' };
        const pending = JSON.parse(record.value) as PendingConsent;
        if (pending.expiresAt <= now()) {
          await secrets.deleteSecret(name);
          return { status: 'expired' };
        }
        // A wrong cookie does not consume the state: the browser that started the consent may still finish it.
        if (browserBinding === undefined || !sameHex(sha256(browserBinding), pending.browserBindingSha256))
          return { status: 'other_browser' };
        await secrets.deleteSecret(name);
        return { status: 'accepted', pending };
      } finally {
        taking.delete(name);
      }
    },
    async deleteExpired() {
      const expired = (await secrets.listSecrets()).filter(
        (secret) =>
          secret.tags.purpose === pendingConsentPurpose && Date.parse(secret.tags.expiresAt ?? '') <= now(),
      );
      for (const secret of expired) await secrets.deleteSecret(secret.name);
      return expired.length;
    },
  };
}

function sameHex(left: string, right: string): boolean {
  const a = Buffer.from(left, 'hex');
  const b = Buffer.from(right, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
