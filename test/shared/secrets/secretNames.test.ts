import { describe, expect, it } from 'vitest';
import { mailboxSecretName } from '../../../shared/secrets/secretNames.ts';
import { secretNamePattern } from '../../../shared/secrets/secretStore.ts';

describe('mailbox secret names', () => {
  it('are valid Key Vault names and readable', () => {
    const name = mailboxSecretName('mailbox-token-cache', 'Alerts.Team+relay@Contoso.com');
    expect(name).toMatch(secretNamePattern);
    expect(name).toMatch(/^mailbox-token-cache-alerts-team-relay-contoso-com-[0-9a-f]{12}$/);
  });

  it('are the same for the same mailbox whatever its case', () => {
    expect(mailboxSecretName('p', 'A@contoso.com')).toBe(mailboxSecretName('p', 'a@contoso.com'));
  });

  it('differ for addresses that slug alike', () => {
    expect(mailboxSecretName('p', 'a.b@contoso.com')).not.toBe(mailboxSecretName('p', 'a-b@contoso.com'));
  });

  it('stay within 127 characters for very long addresses', () => {
    const name = mailboxSecretName('mailbox-token-cache', `${'x'.repeat(200)}@contoso.com`);
    expect(name.length).toBeLessThanOrEqual(127);
    expect(name).toMatch(secretNamePattern);
  });
});
