import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedTestCertificate } from '../peers/testCertificate.ts';

/**
 * Several relay instances as separate processes, as Flex Consumption runs them: each is the built function
 * app served by the development host (dist/devhost/main.js, which `npm test` builds first) with its HTTP
 * routes, timer and queue trigger, and nothing shared with the others but the settings, the peers and the
 * storage account. Spawned asynchronously: the test process hosts the peers.
 */
const root = new URL('../..', import.meta.url).pathname;
const entry = join(root, 'dist', 'devhost', 'main.js');

export interface RelayInstance {
  /** `http://localhost:PORT` */
  origin: string;
  /** Everything the process printed so far. */
  output(): string;
  /** Queue-trigger invocations so far (the processor logs one line per delivery). */
  queueDeliveries(): number;
  /** Stops the process (SIGKILL: no clean-up, as when an instance dies). */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface RelayInstances {
  instances: RelayInstance[];
  stop(): Promise<void>;
}

export async function startRelayInstances(
  count: number,
  settings: Record<string, string>,
): Promise<RelayInstances> {
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first (npm test does)`);
  const directory = await mkdtemp(join(tmpdir(), 'relay-instances-'));
  const caPath = join(directory, 'ca.pem');
  await writeFile(caPath, (await sharedTestCertificate()).cert);
  const instances = await Promise.all(
    Array.from({ length: count }, () => startInstance({ ...settings }, caPath)),
  );
  return {
    instances,
    async stop() {
      await Promise.all(instances.map((instance) => instance.kill('SIGTERM')));
      await rm(directory, { recursive: true, force: true });
    },
  };
}

async function startInstance(settings: Record<string, string>, caPath: string): Promise<RelayInstance> {
  const child: ChildProcess = spawn(process.execPath, [entry, '--port', '0'], {
    cwd: root,
    env: { ...process.env, ...settings, NODE_EXTRA_CA_CERTS: caPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const origin = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "Listening on" within 30 s:\n${output}`)), 30_000);
    const check = () => {
      const match = /Listening on (http:\/\/\S+)/.exec(output);
      if (match === null) return;
      clearTimeout(timer);
      child.stdout?.off('data', check);
      resolve(match[1] ?? '');
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => reject(new Error(`relay instance exited (${String(code)}):\n${output}`)));
  });
  return {
    origin,
    output: () => output,
    queueDeliveries: () => output.match(/queued send \w+ \(delivery \d+\)/g)?.length ?? 0,
    async kill(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
  };
}
