import { createHash } from 'node:crypto';
import type { BodySource } from './rawMessage.ts';

/**
 * The Idempotency-Key fingerprint of a raw MIME body: SHA-256 over the caller's bytes as they arrive (so the
 * body is never held to be hashed), prefixed so that it can never equal a JSON body's fingerprint
 * (shared/idempotency/idempotencyStore.ts, plain hex): the same key with a JSON body and then a raw one is
 * two different requests.
 */
export interface BodyFingerprint {
  /** The body, hashed as it is read. */
  body: AsyncIterable<Uint8Array>;
  /** The fingerprint, once `body` was read to its end. */
  digest(): string;
}

export function bodyFingerprint(source: BodySource): BodyFingerprint {
  const hash = createHash('sha256');
  let ended = false;
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      hash.update(chunk);
      yield chunk;
    }
    ended = true;
  }
  return {
    body: hashed(),
    digest() {
      // Only a body read to its end has a fingerprint; spilling it reads it to its end first.
      if (!ended) throw new Error('the body was not read to its end');
      return `rfc822:${hash.digest('hex')}`;
    },
  };
}
