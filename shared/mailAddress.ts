import addressparser from 'nodemailer/lib/addressparser';

/**
 * The one definition of an email address (addr-spec) for the send request, the configuration and the
 * consent URL: local@domain.tld with no whitespace, no second `@`, and none of the characters that delimit
 * addresses in a header (`<>()[]\,;:"`), so a value that passes is exactly one address and nothing else.
 */
export const mailAddressPattern = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:".]+$/u;

/**
 * A mailbox the relay is told about (a caller's sender, a mailbox rule, a mailbox to connect): an address
 * without `*`, which configuration keeps for wildcards. A sent message's own addresses may hold `*`
 * (RFC 5322 allows it in the local part).
 */
export function isMailboxAddress(value: string): boolean {
  return mailAddressPattern.test(value) && !value.includes('*');
}

/** `*@domain`: every mailbox at a domain an address could have (every domain has a postmaster, RFC 5321 4.5.1). */
export function isDomainWildcard(value: string): boolean {
  return value.startsWith('*@') && isMailboxAddress(`postmaster${value.slice(1)}`);
}

/** The domain of an address (after its last `@`: a quoted local part may hold one, RFC 5321 4.1.2). */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1);
}

/**
 * The one way an address is compared (caller grants, sender routes, mailbox modes, limits): ASCII letters
 * folded to lower case and nothing else. Mail systems fold only ASCII case in domains and (by convention)
 * local parts; String.toLowerCase also folds U+212A KELVIN SIGN to `k` and U+0130 to `i̇`, so an address that
 * Exchange treats as another mailbox would pass a check made for this one.
 */
export function canonicalMailbox(address: string): string {
  return address.trim().replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/** RFC 5321 4.5.3.1: a path is at most 256 octets; 320 (64 + 1 + 255) is the usual generous bound. */
const maxAddressLength = 320;

/** A mailbox as a header names it: display name (possibly empty) and address. */
export interface NamedMailbox {
  name: string;
  address: string;
}

/**
 * The mailboxes an address header value names (`Name <a@b>, c@d`, groups flattened), for JSON fields and raw
 * MIME headers alike; undefined when any entry is not one email address.
 */
export function parseMailboxList(value: string): NamedMailbox[] | undefined {
  const mailboxes: NamedMailbox[] = [];
  for (const entry of addressparser(value, { flatten: true })) {
    const { address } = entry;
    if (address === undefined || address.length > maxAddressLength || !mailAddressPattern.test(address))
      return undefined;
    mailboxes.push({ name: entry.name, address });
  }
  return mailboxes;
}
