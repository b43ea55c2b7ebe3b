import type { RelayConfig } from '../config.ts';
import type { ErrorCode } from '../errorCodes.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import {
  type ClientCredential,
  type CredentialSettings,
  federatedClientCredential,
  loadClientCertificate,
  loadClientSecret,
} from './clientCredential.ts';
import type { ClientAssertionSource } from './managedIdentityAssertion.ts';

/**
 * Every way the app can prove itself to Entra ID (RELAY_CREDENTIAL_TYPE), with all that differs between
 * them, so a new kind is one entry here and no code elsewhere branches on the type:
 * - `secret`: a client secret from the secret store;
 * - `certificate`: a PEM private key and certificate from the secret store (thumbprint computed);
 * - `federated`: a managed-identity token for the federated identity credential's audience, handed to Entra
 *   as the client assertion (nothing stored, nothing expires).
 */
export interface CredentialKind {
  /** What it is, for RELAY_CREDENTIAL_TYPE's line in the README (Markdown). */
  summary: string;
  /**
   * Where the credential is kept, for a kind that keeps one (a kind that stores nothing has nothing to expire
   * and nothing an administrator could rotate under the relay).
   */
  stored?: {
    /** The secret-store entry, named by its setting. */
    secretName(identity: CredentialSettings): string;
    /**
     * The identity rule meaning Entra does not know the stored value: the cached copy may be one an
     * administrator has just rotated, so the store is read again once before the error is reported.
     */
    refusedRule: ErrorCode;
  };
  /** Reads the credential and shapes it for MSAL; its expiresOn is what the status report warns about. */
  load(
    identity: CredentialSettings,
    secrets: SecretStore,
    federatedAssertion?: ClientAssertionSource,
  ): Promise<ClientCredential>;
  /**
   * The identity-table rules (shared/tokens/identityErrors.ts, by relay code) that apply only to this kind:
   * Entra answers AADSTS700027/700024 for a refused certificate and a refused federated assertion alike.
   */
  aadstsRules: readonly ErrorCode[];
}

export const credentialKinds = {
  secret: {
    summary: 'client secret',
    stored: { secretName: (identity) => identity.clientSecretName, refusedRule: 'client_secret_invalid' },
    load: loadClientSecret,
    aadstsRules: ['client_secret_invalid', 'client_secret_expired'],
  },
  certificate: {
    summary: 'PEM private key + certificate',
    stored: {
      secretName: (identity) => identity.clientCertificateName,
      refusedRule: 'client_certificate_invalid',
    },
    load: loadClientCertificate,
    aadstsRules: ['client_certificate_invalid'],
  },
  federated: {
    summary:
      'managed identity as a federated credential: no secret at all, see [docs/app-only.md](docs/app-only.md)',
    load: federatedClientCredential,
    aadstsRules: ['federated_credential_invalid'],
  },
} satisfies Record<string, CredentialKind>;

export type CredentialType = keyof typeof credentialKinds;

/** The values RELAY_CREDENTIAL_TYPE accepts, for its parser. */
export const credentialTypes = Object.keys(credentialKinds) as [CredentialType, ...CredentialType[]];

/** "`secret` (client secret), `certificate` (…) or `federated` (…)", for the settings table. */
export function describeCredentialTypes(): string {
  const described = Object.entries(credentialKinds).map(([type, kind]) => `\`${type}\` (${kind.summary})`);
  return `${described.slice(0, -1).join(', ')} or ${described.at(-1)}`;
}

export function credentialKindOf(identity: Pick<RelayConfig['identity'], 'credentialType'>): CredentialKind {
  return credentialKinds[identity.credentialType];
}
