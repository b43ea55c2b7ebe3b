import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Azurite (the Azure Storage emulator from the `azurite` devDependency), started by the tests themselves:
 * one process per test file on loopback ports it picks itself, in memory, stopped after. The flags are the ones
 * proven here: --skipApiVersionCheck (the current SDKs send a newer API version), --disableTelemetry (no
 * internet), --inMemoryPersistence (nothing left on disk). Spawned asynchronously: a test process that
 * hosts servers must never block its event loop on a child.
 */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
// Azurite's well-known development key (public, documented by Microsoft; not a secret).
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  connectionString: string;
  stop(): Promise<void>;
}

type Service = 'Blob' | 'Queue' | 'Table';
const services: readonly Service[] = ['Blob', 'Queue', 'Table'];

/**
 * Resolves with the port of each service once Azurite says it listens. Azurite picks the ports itself
 * (port 0): a port found free beforehand can be taken by another test process's server before Azurite
 * binds it, and then a check that something answers on it passes against the wrong server.
 */
function listeningPorts(child: ChildProcess, timeoutMs: number): Promise<Record<Service, number>> {
  return new Promise((resolve, reject) => {
    const ports: Partial<Record<Service, number>> = {};
    let output = '';
    const timer = setTimeout(() => fail(`azurite did not listen within ${timeoutMs} ms`), timeoutMs);
    function fail(message: string): void {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      reject(new Error(`${message}\n${output}`));
    }
    function onData(chunk: Buffer): void {
      output += chunk.toString();
      for (const [, service, port] of output.matchAll(
        /Azurite (Blob|Queue|Table) service is successfully listening at http:\/\/127\.0\.0\.1:(\d+)/g,
      ))
        ports[service as Service] = Number(port);
      if (services.every((service) => ports[service] !== undefined)) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        // Nothing reads its output from here on: let it flow so Azurite never blocks on a full pipe.
        child.stdout?.resume();
        resolve(ports as Record<Service, number>);
      }
    }
    child.stdout?.on('data', onData);
    child.once('exit', (code) => fail(`azurite exited with code ${String(code)}`));
  });
}

export async function startAzurite(): Promise<Azurite> {
  const entry = createRequire(import.meta.url).resolve('azurite/dist/src/azurite.js');
  // Azurite writes its debug log and extent metadata next to the working directory: give it its own.
  const workDirectory = await mkdtemp(join(tmpdir(), 'azurite-'));
  const child = spawn(
    process.execPath,
    [
      entry,
      // Silent keeps the start-up lines that name the ports and drops the access log.
      '--silent',
      '--inMemoryPersistence',
      '--skipApiVersionCheck',
      '--disableTelemetry',
      ...services.flatMap((service) => [
        `--${service.toLowerCase()}Host`,
        '127.0.0.1',
        `--${service.toLowerCase()}Port`,
        '0',
      ]),
    ],
    { cwd: workDirectory, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let ports: Record<Service, number>;
  try {
    ports = await listeningPorts(child, 20_000);
  } catch (error) {
    child.kill();
    throw new Error(`${(error as Error).message}\n${stderr}`);
  }
  const { Blob: blobPort, Queue: queuePort, Table: tablePort } = ports;
  const base = 'http://127.0.0.1';
  return {
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};` +
      `BlobEndpoint=${base}:${blobPort}/${AZURITE_ACCOUNT};QueueEndpoint=${base}:${queuePort}/${AZURITE_ACCOUNT};` +
      `TableEndpoint=${base}:${tablePort}/${AZURITE_ACCOUNT};`,
    async stop() {
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        // In-memory: nothing to flush, and a graceful stop waits for idle keep-alive sockets for seconds.
        child.kill('SIGKILL');
        await exited;
      }
      await rm(workDirectory, { recursive: true, force: true });
    },
  };
}
