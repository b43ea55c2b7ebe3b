/**
 * The rules every header a caller supplies must keep, whether it arrives as a JSON field (shared/message.ts)
 * or as a line of a raw MIME message (shared/rawMime/): one definition, so the two paths cannot drift.
 */

/** RFC 5322 2.1.1: a line of a message is at most 998 octets, CRLF excluded. */
export const MAX_LINE_OCTETS = 998;

// C0 controls and DEL; a header value that holds one could end the header or smuggle another.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
export const headerUnsafe = /[\u0000-\u0008\u000a-\u001f\u007f]/;

// A UTF-16 surrogate without its pair is no character at all: encoded as UTF-8 it would reach the recipient
// as U+FFFD, a different message than the one asked for, so it is refused instead.
export const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Headers Exchange Online and its filtering write and trust: X-MS-Exchange-Organization-* steers transport
 * (spam verdicts, authentication results, journaling), X-MS-Exchange-* and X-MS-Office365-Filtering-* carry
 * verdicts, X-Microsoft-Antispam* and X-Forefront-Antispam-Report are EOP's own reports. A caller that could
 * set them could forge a verdict recipients' rules act on, so none of them may come from a caller.
 */
export const reservedHeaderPrefixes = ['x-ms-', 'x-microsoft-', 'x-forefront-'] as const;

/** Why a caller may not set this header name, or undefined when it may. */
export function reservedHeaderProblem(name: string): string | undefined {
  const lower = name.toLowerCase();
  const prefix = reservedHeaderPrefixes.find((reserved) => lower.startsWith(reserved));
  if (prefix === undefined) return undefined;
  return `${name.slice(0, 80)} is reserved for Exchange Online and its filtering (X-MS-*, X-Microsoft-*, X-Forefront-* cannot be set by a caller)`;
}
