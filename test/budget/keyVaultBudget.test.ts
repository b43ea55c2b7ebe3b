import { randomBytes } from 'node:crypto';
import { HttpRequest } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oauthCallback } from '../../functions/oauthCallback.ts';
import { bindHttp } from '../../functions/register.ts';
import { createRuntime, type Runtime } from '../../shared/runtime.ts';
import type { CachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { type KeyVaultPeer, startKeyVaultPeer } from '../peers/keyVaultPeer.ts';
import { connectMailbox } from '../support/connectMailbox.ts';
import { openCachedKeyVaultStore } from '../support/keyVaultStore.ts';
import {
  appClientSecret,
  capturingContext,
  type RelayHarness,
  startRelayHarness,
} from '../support/relayHarness.ts';

/**
 * Key Vault's transaction budget, counted at the vault: 10 delegated mailboxes over a simulated day of
 * tokenRefresh runs (every 6 hours) and status reads (every 5 minutes, as an uptime monitor polls). The
 * clock the secret cache sees is moved on, so its expiry and background re-reads happen as in a real day.
 * The figure is printed for the closing note; the bound is what Key Vault for secrets only must stay under.
 */
const mailboxes = Array.from({ length: 10 }, (_, index) => `shared${index}@contoso.com`);
const statusReadsPerHour = 12;

let harness: RelayHarness;
let vault: KeyVaultPeer;
let runtime: Runtime;
let secrets: CachedSecretStore;
let clock = Date.now();

beforeAll(async () => {
  harness = await startRelayHarness({
    storeClientSecret: false,
    settings: {
      RELAY_MAILBOXES: JSON.stringify(mailboxes.map((address) => ({ address, mode: 'delegated' }))),
      RELAY_PUBLIC_BASE_URL: 'https://relay.contoso.com',
    },
  });
  vault = await startKeyVaultPeer({ authority: harness.identity.authority });
  vault.putSecretDirect('relay-client-secret', appClientSecret, { contentType: 'text/plain' });
  secrets = await openCachedKeyVaultStore(vault, {
    ttlSeconds: harness.config.secrets.cacheSeconds,
    now: () => clock,
  });
  runtime = createRuntime(harness.config, secrets);
  for (const mailbox of mailboxes) await connectMailbox({ identity: harness.identity, runtime }, mailbox);
}, 60_000);

afterAll(async () => {
  await runtime?.close();
  await vault?.close();
  await harness?.close();
});

describe('Key Vault operations for 10 delegated mailboxes', () => {
  it('stays within a budget over a simulated day of timer runs and status reads', async () => {
    const before = vault.requests.filter((request) => request.authenticated).length;
    for (let hour = 0; hour < 24; hour += 1) {
      if (hour % 6 === 0) {
        const report = await runtime.maintenance.refreshAll();
        expect(report.mailboxes.every((outcome) => outcome.ok)).toBe(true);
      }
      for (let read = 0; read < statusReadsPerHour; read += 1) {
        clock += 3_600_000 / statusReadsPerHour;
        const status = await runtime.status();
        expect(status.mailboxes.every((mailbox) => mailbox.health === 'healthy')).toBe(true);
      }
    }
    const operations = vault.requests.filter((request) => request.authenticated).length - before;
    const byKind = Object.fromEntries(
      (['get', 'set', 'list', 'delete', 'other'] as const).map((kind) => [
        kind,
        vault.requests.slice(before).filter((request) => request.authenticated && request.operation === kind)
          .length,
      ]),
    );
    process.stdout.write(
      `\nkey vault operations for ${mailboxes.length} delegated mailboxes over a day: ${operations} (${(operations / 24).toFixed(1)} per hour) ${JSON.stringify(byKind)}\n`,
    );
    // Token caches are written when a refresh rotates them (4 a day each) and read again as the cache's
    // TTL runs out; the vault is listed once, by the one-time migration. Before: 245 an hour.
    expect(operations / 24).toBeLessThan(5);
    expect(byKind.list).toBeLessThanOrEqual(1);
  }, 120_000);
});

describe('the anonymous OAuth callback', () => {
  it('reads no store for 1,000 forged callbacks and keeps nothing per made-up name', async () => {
    const vaultBefore = vault.requests.length;
    const cachedBefore = secrets.size();
    const callback = bindHttp(oauthCallback, runtime);
    const forged = Array.from({ length: 1_000 }, (_, index) => {
      const wellFormed = randomBytes(32).toString('base64url');
      const query =
        index % 3 === 0
          ? `state=${wellFormed}&code=forged` // the state's shape, without the browser's cookie
          : index % 3 === 1
            ? `state=${randomBytes(20).toString('hex')}&code=forged` // not a state the relay issues
            : `state=${wellFormed}&error=access_denied`;
      return new HttpRequest({
        method: 'GET',
        url: `https://relay.contoso.com/api/oauth/callback?${query}`,
        headers: index % 5 === 0 ? { cookie: `relay-consent-0000000000000000=${wellFormed}` } : {},
      });
    });
    const pages = await Promise.all(forged.map((request) => callback(request, capturingContext().context)));
    expect(pages.every((page) => page.status === 400)).toBe(true);
    expect(vault.requests.length - vaultBefore).toBe(0);
    expect(secrets.size()).toEqual(cachedBefore);
    process.stdout.write(
      `\nforged callbacks: 1000, key vault requests: ${vault.requests.length - vaultBefore}\n`,
    );
  });
});
