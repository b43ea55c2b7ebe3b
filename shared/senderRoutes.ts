import type { MailboxRule, SenderRouteRule, senderRelations } from './config.ts';
import { canonicalMailbox, domainOf } from './mailAddress.ts';

/**
 * Who signs in to Exchange for a From address (RELAY_SENDER_ROUTES). Exchange counts its limits, checks SMTP
 * AUTH and checks the right to use a From address per signed-in mailbox (XOAUTH2 `user=`), so the address
 * recipients see and the mailbox that signs in are two facts:
 * - `self`: the From mailbox signs in itself (every address without a route; the relay's original behaviour);
 * - `sendAs`: a sign-in mailbox that holds Send As on the From address (Add-RecipientPermission);
 * - `sendOnBehalf`: a sign-in mailbox granted Send on Behalf (Set-Mailbox -GrantSendOnBehalfTo); the message
 *   carries it in a `Sender:` header, which Exchange requires and recipients see as "on behalf of".
 * A route may name several sign-in mailboxes (a pool): each holds the right on its own and brings its own
 * Exchange limits, so N mailboxes carry N times one mailbox's rate. Callers are still authorized on the From
 * address; the sign-in mailbox is the relay's business.
 */
export type SenderRelation = (typeof senderRelations)[number];

export interface SenderRoute {
  /** The From address, canonical (canonicalMailbox). */
  from: string;
  relation: SenderRelation;
  /** The mailboxes that may sign in for it, in configuration order; `[from]` for `self`. */
  signIn: readonly string[];
}

export interface SenderRouter {
  route(fromAddress: string): SenderRoute;
  /** The addresses no domain route covers: the mailboxes that sign in themselves, and the exact routes. */
  outsideDomainRoutes(): readonly string[];
}

export function createSenderRouter(
  rules: readonly SenderRouteRule[],
  mailboxes: readonly MailboxRule[],
): SenderRouter {
  const exact = new Map<string, SenderRouteRule>();
  const byDomain = new Map<string, SenderRouteRule>();
  for (const rule of rules) {
    if (rule.from.startsWith('*@')) byDomain.set(rule.from.slice(2), rule);
    else exact.set(rule.from, rule);
  }
  // A mailbox listed in RELAY_MAILBOXES (every sign-in mailbox is) signs in as itself, even at a domain a
  // wildcard route covers: it was listed to sign in.
  const signInMailboxes = new Set(mailboxes.map((mailbox) => mailbox.address));
  return {
    route(fromAddress) {
      const from = canonicalMailbox(fromAddress);
      const rule = exact.get(from) ?? (signInMailboxes.has(from) ? undefined : byDomain.get(domainOf(from)));
      return rule === undefined
        ? { from, relation: 'self', signIn: [from] }
        : { from, relation: rule.relation, signIn: rule.signIn };
    },
    outsideDomainRoutes: () => [...signInMailboxes, ...exact.keys()],
  };
}

/**
 * What makes a set of routes unusable, checked at start-up beside the settings themselves: each sign-in
 * mailbox must be listed in RELAY_MAILBOXES (so whether it signs in app-only or delegated is explicit, and
 * the setup script knows every mailbox to grant), a sign-in mailbox is never itself routed (no chains or
 * cycles: Exchange checks one hop), and a routed address is not also listed as a mailbox that signs in.
 */
export function senderRouteProblems(
  rules: readonly SenderRouteRule[],
  mailboxes: readonly MailboxRule[],
): string[] {
  const listed = new Set(mailboxes.map((rule) => rule.address));
  const routedExactly = new Map(
    rules.filter((rule) => !rule.from.startsWith('*@')).map((rule) => [rule.from, rule]),
  );
  const problems: string[] = [];
  rules.forEach((rule, index) => {
    const where = `RELAY_SENDER_ROUTES at ${index}`;
    for (const mailbox of rule.signIn) {
      if (mailbox === rule.from) {
        problems.push(
          `${where}: ${rule.from} cannot sign in for itself; leave it out of RELAY_SENDER_ROUTES`,
        );
      } else if (routedExactly.has(mailbox)) {
        problems.push(
          `${where}: sign-in mailbox ${mailbox} is itself routed to ${routedExactly.get(mailbox)?.signIn.join(', ')}; routes do not chain (Exchange checks the signed-in mailbox's own right)`,
        );
      }
      if (!listed.has(mailbox)) {
        problems.push(
          `${where}: sign-in mailbox ${mailbox} is not listed in RELAY_MAILBOXES; add {"address":"${mailbox}","mode":"app"} (or "delegated")`,
        );
      }
    }
    if (listed.has(rule.from)) {
      problems.push(
        `${where}: ${rule.from} is listed in RELAY_MAILBOXES too, but a routed address never signs in itself; remove one of the two`,
      );
    }
  });
  return problems;
}

/** A PowerShell single-quoted string: nothing inside is expanded, and a quote is written twice. */
export function powerShellString(value: string): string {
  return `'${value.replace(/['\u2018-\u201b]/g, (mark) => mark + mark)}'`;
}

/**
 * The Exchange Online PowerShell that gives the sign-in mailbox the route's right on the From address (the
 * remedy of send_as_denied, the connection test, npm run exchange-setup). Both are PowerShell expressions,
 * so the setup script can pass a loop variable; `grantCommand` quotes plain addresses.
 */
export function grantExpression(
  relation: SenderRouteRule['relation'],
  fromExpression: string,
  signInExpression: string,
): string {
  return relation === 'sendOnBehalf'
    ? `Set-Mailbox -Identity ${fromExpression} -GrantSendOnBehalfTo @{Add=${signInExpression}}`
    : `Add-RecipientPermission -Identity ${fromExpression} -Trustee ${signInExpression} -AccessRights SendAs -Confirm:$false`;
}

export function grantCommand(relation: SenderRouteRule['relation'], from: string, signIn: string): string {
  return grantExpression(relation, powerShellString(from), powerShellString(signIn));
}

/** The right a route's sign-in mailbox needs, in words. */
export function rightName(relation: SenderRouteRule['relation']): string {
  return relation === 'sendOnBehalf' ? 'Send on Behalf' : 'Send As';
}
