import { timingSafeEqual } from 'node:crypto';
import type { CallerRule } from './config.ts';
import { RelayError } from './errors.ts';
import { canonicalMailbox, domainOf } from './mailAddress.ts';
import { sha256 } from './sha256.ts';

/**
 * Client credentials reach every mailbox the Entra app was granted, so the relay is the gate: each caller
 * presents its own API key (stored only as a SHA-256 hash in configuration) and may send only as the
 * senders its rule names. The Functions host's function key still guards the endpoint in front of this.
 */
export const callerKeyHeader = 'x-relay-key';

export interface Caller {
  name: string;
  senders: readonly string[];
}

export function hashCallerKey(apiKey: string): string {
  return sha256(apiKey);
}

/**
 * `carriedIn` says where this request should carry the key (`x-relay-key header`, or where a compatible
 * API's SDK puts it), so the message points at what the caller controls.
 */
export function authenticateCaller(
  apiKey: string | null | undefined,
  rules: readonly CallerRule[],
  carriedIn = `${callerKeyHeader} header`,
): Caller {
  if (rules.length === 0) {
    throw new RelayError('no_callers_configured');
  }
  if (apiKey === null || apiKey === undefined || apiKey === '') {
    throw new RelayError('caller_key_missing', {
      message: `The request has no ${carriedIn}.`,
      remedy: `Send the API key you were given in the ${carriedIn}.`,
    });
  }
  const presented = Buffer.from(hashCallerKey(apiKey), 'hex');
  // Compare against every rule so the time taken does not tell which keys exist.
  let match: CallerRule | undefined;
  for (const rule of rules) {
    if (timingSafeEqual(presented, Buffer.from(rule.keySha256, 'hex')) && match === undefined) match = rule;
  }
  if (match === undefined) {
    throw new RelayError('caller_key_invalid', {
      message: `The ${carriedIn} does not match any configured caller.`,
    });
  }
  return { name: match.name, senders: match.senders };
}

export function mayUseSender(caller: Caller, senderAddress: string): boolean {
  const sender = canonicalMailbox(senderAddress);
  const domainWildcard = `*@${domainOf(sender)}`;
  return caller.senders.some(
    (allowed) => allowed === '*' || allowed === sender || allowed === domainWildcard,
  );
}

export function authorizeSender(caller: Caller, senderAddress: string): void {
  if (!mayUseSender(caller, senderAddress)) {
    throw new RelayError('sender_not_allowed', {
      message: `Caller "${caller.name}" may not send as ${senderAddress}.`,
      details: { caller: caller.name, sender: senderAddress },
    });
  }
}
