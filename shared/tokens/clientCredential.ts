import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { NodeAuthOptions } from '@azure/msal-node';
import { RelayError } from '../errors.ts';
import type { SecretStore } from '../secrets/secretStore.ts';
import { type ClientAssertionSource, createManagedIdentityAssertion } from './managedIdentityAssertion.ts';

/**
 * Reads the app's credential from the secret store and shapes it for MSAL: a client secret, or a
 * certificate stored as PEM holding the private key and the certificate (the format Key Vault exports
 * for PEM certificates). The thumbprint is computed from the certificate, so nobody has to copy it by hand.
 * A federated credential reads nothing from the store: MSAL asks the assertion source for each token request.
 * credentialKinds.ts says which of these loaders each RELAY_CREDENTIAL_TYPE uses.
 */
/**
 * The identity settings the loaders read; RelayConfig['identity'] has them all. Stated here rather than
 * picked from RelayConfig because the configuration's credential-type parser is made from credentialKinds.
 */
export interface CredentialSettings {
  clientSecretName: string;
  clientCertificateName: string;
  managedIdentityClientId: string | undefined;
  federatedTokenAudience: string;
}

export type ClientCredential = Pick<
  NodeAuthOptions,
  'clientSecret' | 'clientCertificate' | 'clientAssertion'
> & {
  /** Identifies the credential's value without revealing it, to notice a rotation. */
  fingerprint: string;
  expiresOn: Date | undefined;
};

/** The app's client secret, as stored under RELAY_CLIENT_SECRET_NAME. */
export async function loadClientSecret(
  identity: CredentialSettings,
  secrets: SecretStore,
): Promise<ClientCredential> {
  const secret = await secrets.getSecret(identity.clientSecretName);
  if (secret === undefined || secret.value.trim() === '')
    throw credentialMissing(identity.clientSecretName, secrets.kind, 'client secret');
  return {
    clientSecret: secret.value.trim(),
    fingerprint: `secret:${secret.updatedOn?.getTime() ?? 0}:${secret.value.length}`,
    expiresOn: secret.expiresOn,
  };
}

/** The app's certificate with its private key, as PEM stored under RELAY_CLIENT_CERTIFICATE_NAME. */
export async function loadClientCertificate(
  identity: CredentialSettings,
  secrets: SecretStore,
): Promise<ClientCredential> {
  const stored = await secrets.getSecret(identity.clientCertificateName);
  if (stored === undefined)
    throw credentialMissing(
      identity.clientCertificateName,
      secrets.kind,
      'certificate (PEM with private key)',
    );
  return parseCertificateCredential(stored.value, identity.clientCertificateName, stored.expiresOn);
}

/** The managed identity's token as the client assertion; nothing is read from the store. */
export async function federatedClientCredential(
  identity: CredentialSettings,
  _secrets: SecretStore,
  federatedAssertion?: ClientAssertionSource,
): Promise<ClientCredential> {
  return {
    clientAssertion: federatedAssertion ?? defaultFederatedAssertion(identity),
    fingerprint: 'federated',
    expiresOn: undefined,
  };
}

export function parseCertificateCredential(
  pem: string,
  secretName: string,
  storedExpiry?: Date,
): ClientCredential {
  const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
  const keyBlock =
    /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/.exec(pem)?.[0];
  if (certificateBlock === undefined || keyBlock === undefined) {
    throw new RelayError('client_certificate_unreadable', {
      message: `The secret ${secretName} must hold a PEM private key (unencrypted) and its certificate.`,
      remedy:
        'Import the certificate into Key Vault as PEM (content type application/x-pem-file), or store "key.pem + cert.pem" concatenated.',
    });
  }
  let certificate: X509Certificate;
  let privateKey: string;
  try {
    certificate = new X509Certificate(certificateBlock);
    privateKey = createPrivateKey(keyBlock).export({ format: 'pem', type: 'pkcs8' }).toString();
  } catch {
    throw new RelayError('client_certificate_unreadable', {
      message: `The certificate or private key in ${secretName} could not be read.`,
      remedy: 'Store an unencrypted PEM private key with its certificate; encrypted keys are not supported.',
    });
  }
  const thumbprintSha256 = certificate.fingerprint256.replaceAll(':', '');
  return {
    clientCertificate: { thumbprintSha256, privateKey, x5c: certificateBlock },
    fingerprint: `certificate:${thumbprintSha256}`,
    expiresOn: storedExpiry ?? new Date(certificate.validTo),
  };
}

function credentialMissing(name: string, store: string, what: string): RelayError {
  return new RelayError('client_credential_missing', {
    message: `The app's ${what} is not in the ${store === 'key-vault' ? 'Key Vault' : 'local secret file'} under the name ${name}.`,
    remedy:
      store === 'key-vault'
        ? `az keyvault secret set --vault-name <vault> --name ${name} --value <value>`
        : `npm run secret -- set ${name} (stores it in the local secret file)`,
  });
}

// One managed-identity assertion source per configuration, shared by the app-only and delegated clients
// and the status report, so the identity's token is fetched and cached once.
const federatedAssertions = new WeakMap<CredentialSettings, ClientAssertionSource>();

function defaultFederatedAssertion(identity: CredentialSettings): ClientAssertionSource {
  let assertion = federatedAssertions.get(identity);
  if (assertion === undefined) {
    assertion = createManagedIdentityAssertion(identity);
    federatedAssertions.set(identity, assertion);
  }
  return assertion;
}
