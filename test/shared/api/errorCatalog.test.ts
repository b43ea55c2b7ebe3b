import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '../../../shared/api/errorCatalog.ts';
import { aadstsRules } from '../../../shared/tokens/identityErrors.ts';

/**
 * Every error code in the code base is in the catalog with the status it is thrown with, and documented in
 * docs/troubleshooting.md; nothing is listed that the code no longer emits. Codes are read from the source
 * text (`code: '...'` in shared/ and functions/), so a code added anywhere later fails here until listed.
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));

// zod's own issue codes (ctx.addIssue({ code: 'custom' })) are not relay errors.
const zodIssueCodes = new Set([
  'custom',
  'invalid_type',
  'too_big',
  'too_small',
  'invalid_format',
  'invalid_value',
]);

function sourceFiles(directory: string): string[] {
  return readdirSync(join(root, directory), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => join(root, directory, file));
}

const sources = [...sourceFiles('shared'), ...sourceFiles('functions')].map((file) => ({
  file: file.slice(root.length),
  text: readFileSync(file, 'utf8'),
}));

function codesInSource(): Map<string, string> {
  const codes = new Map<string, string>();
  for (const { file, text } of sources) {
    for (const match of text.matchAll(/\bcode: '([a-z0-9_]+)'/g)) {
      const code = match[1] ?? '';
      if (!zodIssueCodes.has(code) && !codes.has(code)) codes.set(code, file);
    }
  }
  return codes;
}

const documentation = readFileSync(join(root, 'docs/troubleshooting.md'), 'utf8');
const documentedRows = [...documentation.matchAll(/^\| `([a-z0-9_]+)` \| (\d{3}) \|/gm)].map(
  (match) => `${match[1]} ${match[2]}`,
);
const catalogued = errorCatalog.map((entry) => `${entry.code} ${entry.status}`);

describe('error catalog', () => {
  it('lists every error code the code base emits, and no other', () => {
    const inSource = codesInSource();
    const inCatalog = new Set(errorCatalog.map((entry) => entry.code));
    for (const [code, file] of inSource)
      expect(inCatalog.has(code), `${code} (${file}) is in shared/api/errorCatalog.ts`).toBe(true);
    for (const code of inCatalog) expect(inSource.has(code), `${code} is still emitted somewhere`).toBe(true);
  });

  it('gives each code the status the code throws it with', () => {
    for (const { file, text } of sources) {
      for (const match of text.matchAll(/\bcode: '([a-z0-9_]+)',\s*status: (\d{3})/g)) {
        expect(catalogued, `${match[1]} with status ${match[2]} (${file})`).toContain(
          `${match[1]} ${match[2]}`,
        );
      }
    }
  });

  it('documents every code with its status in docs/troubleshooting.md, and nothing stale', () => {
    expect(new Set(documentedRows)).toEqual(new Set(catalogued));
  });

  it('documents a fix for each code', () => {
    for (const line of documentation.split('\n').filter((row) => /^\| `[a-z0-9_]+` \| \d{3} \|/.test(row))) {
      const cells = line.split(' | ');
      expect(cells.at(-1)?.replace(/\|$/, '').trim().length, line).toBeGreaterThan(10);
    }
  });

  it('lists every AADSTS code the relay recognises next to the code it becomes', () => {
    const section = documentation.slice(documentation.indexOf('## Entra ID (AADSTS) codes'));
    for (const rule of aadstsRules) {
      const line = section.split('\n').find((entry) => entry.includes(`\`${rule.code}\``)) ?? '';
      for (const aadsts of rule.codes)
        expect(line, `AADSTS${aadsts} -> ${rule.code}`).toContain(String(aadsts));
    }
  });
});
