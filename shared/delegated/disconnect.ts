import { invalidRequest, RelayError } from '../errors.ts';
import type { MailboxHealthStore } from '../health/mailboxHealth.ts';
import { isMailboxAddress } from '../mailAddress.ts';
import type { MailboxDirectory } from '../mailboxes.ts';
import { mailboxTag } from '../secrets/secretNames.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { emptyTokenCache, tokenCachePurpose, tokenCacheSecretName } from '../tokens/tokenCachePlugin.ts';

/**
 * DELETE /api/mailboxes/{address}/connection: stops using and refreshing a delegated mailbox's sign-in.
 * The state is recorded first, so every instance refuses sends as the mailbox (within 30 s; this one at
 * once); then the token cache is overwritten with an empty one as a new version. The secret is never
 * deleted: Key Vault keeps a deleted name until it is purged (with purge protection, for 90 days), and the
 * next sign-in writes to the same name, so connecting again through /api/oauth/start works at once.
 * Disconnecting twice is harmless.
 */
export interface Disconnected {
  mailbox: string;
  health: 'disconnected';
  disconnectedAt: string;
  /** Where a person connects it again. */
  consentUrl: string;
}

export function createMailboxDisconnect(options: {
  directory: MailboxDirectory;
  health: MailboxHealthStore;
  secrets: SecretStore;
  /** Forget this process's cached access token and any open SMTP session of the mailbox. */
  forget: (mailbox: string) => Promise<void>;
  now?: () => number;
}): (address: string) => Promise<Disconnected> {
  const now = options.now ?? Date.now;
  return async (address) => {
    const mailbox = address.trim().toLowerCase();
    if (!isMailboxAddress(mailbox))
      throw invalidRequest([{ field: 'address', message: 'must be a mailbox address' }]);
    if (options.directory.listedModeOf(mailbox) !== 'delegated') {
      throw new RelayError('mailbox_not_delegated', {
        message: `${mailbox} is not a delegated mailbox in RELAY_MAILBOXES, so it has no sign-in to disconnect.`,
      });
    }
    const at = new Date(now());
    await options.health.recordDisconnected(mailbox, at);
    await options.forget(mailbox);
    await options.secrets.setSecret(tokenCacheSecretName(mailbox), emptyTokenCache, {
      tags: { [mailboxTag]: mailbox, purpose: tokenCachePurpose },
      contentType: 'application/json',
    });
    return {
      mailbox,
      health: 'disconnected',
      disconnectedAt: at.toISOString(),
      consentUrl: options.directory.consentStartUrl(mailbox),
    };
  };
}
