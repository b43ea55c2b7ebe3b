import { type BinaryToTextEncoding, createHash } from 'node:crypto';

/**
 * SHA-256 of UTF-8 text, the one digest the relay uses: caller keys are stored as it, and it turns
 * addresses, caller names, OAuth states and request bodies into fixed-length keys that reveal nothing.
 * Hex unless asked otherwise (PKCE's code challenge is base64url, RFC 7636 4.2).
 */
export function sha256(text: string, encoding: BinaryToTextEncoding = 'hex'): string {
  return createHash('sha256').update(text, 'utf8').digest(encoding);
}
