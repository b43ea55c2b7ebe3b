import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.ts';
import { exchangeSetupScript } from '../../../shared/setup/exchangeSetup.ts';

/**
 * docs/sender-routing.md shows, per relation, the settings and the PowerShell npm run exchange-setup prints
 * for them. Each worked example is checked against the script, so the documentation cannot drift from it.
 */
const doc = readFileSync(new URL('../../../docs/sender-routing.md', import.meta.url), 'utf8');

interface WorkedExample {
  title: string;
  settings: Record<string, string>;
  powerShell: string;
}

function workedExamples(): WorkedExample[] {
  return doc
    .split(/^## /m)
    .slice(1)
    .map((section) => {
      const settings = Object.fromEntries(
        [...(/```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '').matchAll(/^(RELAY_[A-Z_]+)='(.*)'$/gm)].map(
          ([, name, value]) => [name ?? '', value ?? ''],
        ),
      );
      return {
        title: section.slice(0, section.indexOf('\n')),
        settings,
        powerShell: /```powershell\n([\s\S]*?)```/.exec(section)?.[1] ?? '',
      };
    });
}

describe('docs/sender-routing.md', () => {
  const examples = workedExamples();

  it('has a worked example for Send As, Send on Behalf and a pool', () => {
    expect(examples.map((example) => example.title.split(':')[0])).toEqual([
      'Send As',
      'Send on Behalf',
      'A pool',
    ]);
  });

  it.each(examples.map((example) => [example.title, example] as const))(
    '"%s" shows exactly what npm run exchange-setup prints for its settings',
    (_title, example) => {
      const config = loadConfig({
        RELAY_CLIENT_ID: '11111111-2222-3333-4444-555555555555',
        RELAY_TENANT_ID: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
        ...example.settings,
      });
      expect(Object.keys(example.settings)).toEqual(['RELAY_MAILBOXES', 'RELAY_SENDER_ROUTES']);
      expect(example.powerShell).toBe(exchangeSetupScript(config, { classic: false }));
    },
  );
});
