/**
 * Where the relay keeps what must stay secret: the app's client secret or certificate, and (for delegated
 * mailboxes) MSAL's token cache. Azure Key Vault in Azure; a local file for development. Both pass the same
 * contract tests (test/shared/secrets/secretStoreContract.ts).
 */
export interface SecretProperties {
  name: string;
  tags: Record<string, string>;
  contentType: string | undefined;
  expiresOn: Date | undefined;
  updatedOn: Date | undefined;
}

export interface SecretRecord extends SecretProperties {
  value: string;
}

export interface SetSecretOptions {
  tags?: Record<string, string>;
  contentType?: string;
  expiresOn?: Date;
}

export interface SecretStore {
  readonly kind: 'key-vault' | 'file';
  /** The secret's current value, or undefined when it does not exist. */
  getSecret(name: string): Promise<SecretRecord | undefined>;
  /** Stores a new value; the previous one stays until the new one is safely written. */
  setSecret(name: string, value: string, options?: SetSecretOptions): Promise<void>;
  listSecrets(): Promise<SecretProperties[]>;
  deleteSecret(name: string): Promise<void>;
}

/** Key Vault's rule for secret names, which the file store follows too so names move between them. */
export const secretNamePattern = /^[0-9a-zA-Z-]{1,127}$/;
