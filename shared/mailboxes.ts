import { routePath } from './api/routes.ts';
import type { MailboxMode, MailboxRule } from './config.ts';
import { canonicalMailbox } from './mailAddress.ts';

/**
 * Which sender mailboxes send app-only and which with their own consented sign-in (RELAY_MAILBOXES).
 * A sender that is not listed is sent app-only: that was the relay's only mode before delegated sending,
 * and a delegated mailbox cannot work anyway until someone has connected it through the consent flow.
 */
export interface MailboxDirectory {
  modeOf(address: string): MailboxMode;
  /** The mode of a mailbox RELAY_MAILBOXES lists; undefined for any other address. */
  listedModeOf(address: string): MailboxMode | undefined;
  delegatedMailboxes(): string[];
  listed(): readonly MailboxRule[];
  /** Where an administrator connects (or reconnects) a delegated mailbox. */
  consentStartUrl(address: string): string;
}

export function createMailboxDirectory(
  rules: readonly MailboxRule[],
  publicBaseUrl: string,
): MailboxDirectory {
  const modes = new Map(rules.map((rule) => [canonicalMailbox(rule.address), rule.mode]));
  return {
    modeOf: (address) => modes.get(canonicalMailbox(address)) ?? 'app',
    listedModeOf: (address) => modes.get(canonicalMailbox(address)),
    delegatedMailboxes: () => rules.filter((rule) => rule.mode === 'delegated').map((rule) => rule.address),
    listed: () => rules,
    consentStartUrl: (address) =>
      `${publicBaseUrl}${routePath('oauthStart')}?mailbox=${encodeURIComponent(canonicalMailbox(address))}`,
  };
}

/** The OAuth redirect URI: derived from configuration only, so a forged Host header cannot redirect codes. */
export function consentCallbackUrl(publicBaseUrl: string): string {
  return `${publicBaseUrl}${routePath('oauthCallback')}`;
}
