import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedTestCertificate } from '../peers/testCertificate.ts';
import { type Azurite, startAzurite } from '../support/azurite.ts';
import { type RelayHarness, startRelayHarness } from '../support/relayHarness.ts';

/**
 * `npm start` on a machine without Azure Functions Core Tools: the script builds the app and serves it
 * with the development host. Driven as a user would: a child process with no `func` on PATH, real HTTP
 * requests, the loopback SMTP and identity peers behind it, Azurite for the queue, then Ctrl+C's cousin
 * SIGTERM. The relay in the child has only its settings and the local secret file.
 */
const root = new URL('../..', import.meta.url).pathname;
const alertsKey = { 'x-relay-key': 'caller-key-alerts-0123456789' };

let harness: RelayHarness;
let azurite: Azurite;
let directory: string;
let child: ChildProcess;
let output = '';
let origin = '';

function waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(output);
      if (match === null) return false;
      clearTimeout(timer);
      child.stdout?.off('data', check);
      resolve(match);
      return true;
    };
    const timer = setTimeout(() => {
      child.stdout?.off('data', check);
      reject(new Error(`no ${pattern} in npm start's output within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    if (!check()) child.stdout?.on('data', check);
  });
}

beforeAll(async () => {
  azurite = await startAzurite();
  harness = await startRelayHarness({
    settings: {
      RELAY_STORAGE_CONNECTION: azurite.connectionString,
      // Every second, so the timer's first run is seen within the test.
      RELAY_TOKEN_REFRESH_SCHEDULE: '*/1 * * * * *',
    },
  });
  directory = await mkdtemp(join(tmpdir(), 'relay-npm-start-'));
  const caPath = join(directory, 'ca.pem');
  await writeFile(caPath, (await sharedTestCertificate()).cert);
  const pathWithoutFunc = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((entry) => !entry.includes('azure-functions-core-tools'))
    .join(delimiter);
  child = spawn(process.execPath, ['scripts/start.mjs', '--port', '0'], {
    cwd: root,
    env: { ...process.env, ...harness.settings, PATH: pathWithoutFunc, NODE_EXTRA_CA_CERTS: caPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  // The script builds first (the bundle, scripts/bundle.mjs), which takes a while on a busy machine.
  origin = (await waitForOutput(/Listening on (http:\/\/\S+)/, 120_000))[1] ?? '';
}, 150_000);

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  await harness?.close();
  await azurite?.stop();
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

describe('npm start without Core Tools', () => {
  it('says it serves the app with the development host', () => {
    expect(output).toContain('Core Tools (func) is not installed');
    expect(output).toContain(`send: [POST] ${origin}/api/send`);
  });

  it('answers GET /api/openapi.json', async () => {
    const response = await fetch(`${origin}/api/openapi.json`);
    expect(response.status).toBe(200);
    const document = (await response.json()) as { openapi: string; paths: Record<string, unknown> };
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toContain('/api/send');
  });

  it('sends a JSON message through the loopback SMTP server', async () => {
    const response = await fetch(`${origin}/api/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...alertsKey },
      body: JSON.stringify({
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        subject: 'From npm start',
        text: 'served by the development host',
      }),
    });
    const body = (await response.json()) as { accepted: string[]; sender: string };
    expect(response.status).toBe(200);
    expect(body).toMatchObject({ sender: 'alerts@contoso.com', accepted: ['ops@contoso.com'] });
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.authUser).toBe('alerts@contoso.com');
    expect(received?.raw.toString()).toContain('Subject: From npm start');
  });

  it('delivers a queued message through the queue trigger', async () => {
    harness.smtp.reset();
    const response = await fetch(`${origin}/api/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'respond-async', ...alertsKey },
      body: JSON.stringify({
        from: 'alerts@contoso.com',
        to: 'ops@contoso.com',
        subject: 'Queued',
        text: 'q',
      }),
    });
    expect(response.status).toBe(202);
    const { statusUrl } = (await response.json()) as { statusUrl: string };
    expect(statusUrl.startsWith(`${origin}/api/send/`)).toBe(true);
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.raw.toString()).toContain('Subject: Queued');
    const status = await fetch(statusUrl, { headers: alertsKey });
    expect(await status.json()).toMatchObject({ state: expect.stringMatching(/^(sending|sent)$/) });
  });

  it('runs the tokenRefresh timer on its schedule', async () => {
    await waitForOutput(/\[tokenRefresh\] client credential/, 10_000);
  });

  it('stops cleanly on SIGTERM', async () => {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(output).toContain('SIGTERM: stopping');
  });
});
