import { sha256 } from '../sha256.ts';

/**
 * Key Vault secret names allow only letters, digits and `-` (at most 127). A mailbox address is turned
 * into such a name deterministically: a readable slug plus a hash of the exact address, so that
 * `a.b@contoso.com` and `a-b@contoso.com` never share a secret. The address itself goes into a tag.
 */
export const mailboxTag = 'mailbox';

export function mailboxSecretName(purpose: string, mailboxAddress: string): string {
  const address = mailboxAddress.trim().toLowerCase();
  const digest = sha256(address).slice(0, 12);
  const slug = address
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 127 - purpose.length - digest.length - 2)
    .replace(/-+$/, '');
  return `${purpose}-${slug}-${digest}`;
}
