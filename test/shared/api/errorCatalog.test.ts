import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '../../../shared/api/errorCatalog.ts';
import { RelayError, toErrorBody } from '../../../shared/errors.ts';
import { aadstsRules } from '../../../shared/tokens/identityErrors.ts';

/**
 * The error table (shared/errorCodes.ts) is the one list of codes: a RelayError is built from a code, so the
 * compiler rejects a code the table does not have, and the status comes from the table. What it cannot
 * check is the prose: docs/troubleshooting.md documents every code with the table's status and area, and
 * nothing else.
 */
const documentation = readFileSync(new URL('../../../docs/troubleshooting.md', import.meta.url), 'utf8');
const documentedRows = documentation
  .split('\n')
  .filter((line) => /^\| `[a-z0-9_]+` \| \d{3} \|/.test(line))
  .map((line) => line.split(' | '));

describe('error table', () => {
  it('is documented in docs/troubleshooting.md, each code with its status and area, and nothing stale', () => {
    const documented = documentedRows.map(
      ([code, status, area]) => `${code?.slice(3, -1)} ${status} ${area}`,
    );
    const tabled = errorCatalog.map((entry) => `${entry.code} ${entry.status} ${entry.area}`);
    expect(new Set(documented)).toEqual(new Set(tabled));
    expect(documented.length, 'each code documented once').toBe(tabled.length);
  });

  it('documents a fix for each code', () => {
    for (const cells of documentedRows)
      expect(cells.at(-1)?.replace(/\|$/, '').trim().length, cells.join(' | ')).toBeGreaterThan(10);
  });

  it('lists every AADSTS code the relay recognises next to the code it becomes', () => {
    const section = documentation.slice(documentation.indexOf('## Entra ID (AADSTS) codes'));
    for (const rule of aadstsRules) {
      const line = section.split('\n').find((entry) => entry.includes(`\`${rule.code}\``)) ?? '';
      for (const aadsts of rule.codes)
        expect(line, `AADSTS${aadsts} -> ${rule.code}`).toContain(String(aadsts));
    }
  });

  it('gives every 429 and 503 a Retry-After, as the docs promise, and no permanent failure one', () => {
    for (const entry of errorCatalog) {
      if (entry.status === 429 || entry.status === 503) expect(entry.retryable, entry.code).toBe(true);
      const error = new RelayError(entry.code, { retryAfterSeconds: 7 });
      expect(error.transient, entry.code).toBe(entry.retryable);
      expect(error.retryAfterSeconds, entry.code).toBe(entry.retryable ? 7 : undefined);
    }
  });

  it('builds an error from its code alone: the status, title and remedy come from the table', () => {
    const error = new RelayError('smtp_throttled');
    expect(error.status).toBe(503);
    expect(error.retryAfterSeconds).toBe(60);
    expect(toErrorBody(error)).toEqual({
      error: {
        code: 'smtp_throttled',
        message:
          'Exchange Online is throttling this mailbox (432 4.3.2: more than 3 concurrent connections or too many messages).',
        remedy:
          'Retry after the Retry-After delay; keep other applications from sending as the same mailbox at the same time.',
      },
    });
    const specific = new RelayError('send_not_found', {
      message: 'No queued message x.',
      remedy: 'Look again.',
    });
    expect(toErrorBody(specific)).toEqual({
      error: { code: 'send_not_found', message: 'No queued message x.', remedy: 'Look again.' },
    });
  });
});
