import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRoutes, queueFunctions, timerFunctions } from '../../shared/api/routes.ts';
import { sharedTestCertificate } from '../peers/testCertificate.ts';
import { type RelayHarness, startRelayHarness } from '../support/relayHarness.ts';

/**
 * The deployed app is the bundle (scripts/bundle.mjs): built here into a directory of its own that holds
 * only what is deployed (dist/, host.json, package.json; no node_modules above it), loaded in a fresh
 * process by a stand-in for the Functions worker (bench/coldStartWorker.ts), which registers what the host
 * would and invokes functions through the app's own @azure/functions, as the worker does.
 */
const root = new URL('../..', import.meta.url).pathname;
const workerModule = new URL('../../bench/coldStartWorker.ts', import.meta.url).href;

interface Loaded {
  functions: {
    name: string;
    bindings: Record<string, { type: string; route?: string; methods?: string[] }>;
  }[];
  answers: { status: number; body: string }[];
}

let harness: RelayHarness;
let directory: string;
let loaded: Loaded;

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${args.join(' ')} exited with ${code}:\n${output}`)),
    );
  });
}

// What the child does: load every dist/functions/*.js as the worker would, then invoke send three times.
const probe = `
import { readdirSync } from 'node:fs';
import { installWorkerStandIn } from ${JSON.stringify(workerModule)};
const worker = installWorkerStandIn();
const entry = new URL('./dist/functions/', 'file://' + process.cwd() + '/');
await worker.load(readdirSync(entry).filter((file) => file.endsWith('.js')).map((file) => new URL(file, entry)));
const send = (headers, body) => worker.invokeHttp('send', { method: 'POST', path: '/api/send', headers: { 'content-type': 'application/json', ...headers }, body });
const answers = [
  await send({ 'x-relay-key': 'caller-key-alerts-0123456789' }, JSON.stringify({ from: 'alerts@contoso.com', to: 'ops@contoso.com', subject: 'From the bundle', text: 'bundled' })),
  await send({ 'x-relay-key': 'not-a-key-of-anyone-0123456789' }, '{}'),
  await send({ 'x-relay-key': 'caller-key-alerts-0123456789' }, '{"from":'),
];
const functions = [...worker.functions.values()].map(({ name, bindings }) => ({ name, bindings }));
console.log('RESULT ' + JSON.stringify({ functions, answers }));
process.exit(0);
`;

beforeAll(async () => {
  harness = await startRelayHarness();
  directory = await mkdtemp(join(tmpdir(), 'relay-bundle-'));
  await Promise.all(
    ['host.json', 'package.json'].map((file) => copyFile(join(root, file), join(directory, file))),
  );
  await run(process.execPath, ['scripts/bundle.mjs', '--outdir', join(directory, 'dist')], { cwd: root });
  const caPath = join(directory, 'ca.pem');
  await writeFile(caPath, (await sharedTestCertificate()).cert);
  await writeFile(join(directory, 'probe.mjs'), probe);
  const output = await run(process.execPath, ['probe.mjs'], {
    cwd: directory,
    env: { PATH: process.env.PATH, ...harness.settings, NODE_EXTRA_CA_CERTS: caPath },
  });
  const line = output.split('\n').find((text) => text.startsWith('RESULT '));
  loaded = JSON.parse(line?.slice('RESULT '.length) ?? '{}') as Loaded;
}, 120_000);

afterAll(async () => {
  await harness?.close();
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

describe('the bundled function app', () => {
  it('registers every HTTP route of the function table with its method, and every timer and queue', () => {
    const registered = new Map(loaded.functions.map((fn) => [fn.name, Object.values(fn.bindings)]));
    for (const [name, route] of Object.entries(httpRoutes)) {
      const trigger = registered.get(name)?.find((binding) => binding.type === 'httpTrigger');
      expect(trigger, name).toMatchObject({ route: route.route, methods: [route.method] });
    }
    for (const name of Object.keys(timerFunctions))
      expect(registered.get(name)?.map((binding) => binding.type)).toContain('timerTrigger');
    for (const name of Object.keys(queueFunctions))
      expect(registered.get(name)?.map((binding) => binding.type)).toContain('queueTrigger');
    expect(registered.size).toBe(
      Object.keys(httpRoutes).length +
        Object.keys(timerFunctions).length +
        Object.keys(queueFunctions).length,
    );
  });

  it('sends a message through the loopback SMTP server without node_modules', async () => {
    const [sent] = loaded.answers;
    expect(sent?.status).toBe(200);
    expect(JSON.parse(sent?.body ?? '{}')).toMatchObject({ accepted: ['ops@contoso.com'] });
    const [received] = await harness.smtp.waitForMessages(1);
    expect(received?.raw.toString()).toContain('Subject: From the bundle');
  });

  it('answers errors thrown anywhere in the bundle with their own code and status', () => {
    const [, unknownKey, badJson] = loaded.answers;
    expect(unknownKey?.status).toBe(401);
    expect(JSON.parse(unknownKey?.body ?? '{}').error.code).toBe('caller_key_invalid');
    expect(badJson?.status).toBe(400);
    expect(JSON.parse(badJson?.body ?? '{}').error.code).toBe('invalid_json');
  });
});
