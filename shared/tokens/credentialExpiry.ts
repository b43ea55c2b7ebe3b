import type { RelayConfig } from '../config.ts';
import { ensureRelayError } from '../errors.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { credentialKindOf } from './credentialKinds.ts';

/**
 * How long the app's client secret or certificate has left: the secret's expiresOn in the store (set it
 * when storing a client secret; Key Vault shows it too) or the certificate's validTo. Entra refuses an
 * expired secret with AADSTS7000222 and then every mailbox stops, app-only and delegated alike.
 */
export const credentialWarningDays = 30;

export interface CredentialExpiry {
  type: RelayConfig['identity']['credentialType'];
  /** The stored secret or certificate; absent for a federated credential, which has nothing to expire. */
  secretName?: string;
  expiresOn?: string;
  daysLeft?: number;
  /** Set when fewer than 30 days are left, the expiry is unknown, or the credential cannot be read. */
  warning?: string;
  /** Why the credential could not be read (an error code), when it could not. */
  unreadable?: string;
}

export async function describeCredentialExpiry(
  identity: RelayConfig['identity'],
  secrets: SecretStore,
  now: number = Date.now(),
): Promise<CredentialExpiry> {
  const kind = credentialKindOf(identity);
  // Nothing stored (a federated credential is the managed identity's own token): nothing can expire.
  if (kind.stored === undefined) return { type: identity.credentialType };
  const secretName = kind.stored.secretName(identity);
  const base = { type: identity.credentialType, secretName };
  try {
    const credential = await kind.load(identity, secrets);
    if (credential.expiresOn === undefined) {
      return {
        ...base,
        warning: `The expiry of ${secretName} is unknown: set its expiration date in the store to be warned before it expires.`,
      };
    }
    const daysLeft = Math.floor((credential.expiresOn.getTime() - now) / 86_400_000);
    return {
      ...base,
      expiresOn: credential.expiresOn.toISOString(),
      daysLeft,
      ...(daysLeft < credentialWarningDays
        ? {
            warning:
              daysLeft < 0
                ? `The app's ${identity.credentialType} expired ${-daysLeft} days ago: create a new one and store it under ${secretName}.`
                : `The app's ${identity.credentialType} expires in ${daysLeft} days: create a new one and store it under ${secretName}.`,
          }
        : {}),
    };
  } catch (error) {
    const relayError = ensureRelayError(error);
    return {
      ...base,
      warning: `${relayError.message}${relayError.remedy ? ` ${relayError.remedy}` : ''}`,
      unreadable: relayError.code,
    };
  }
}
