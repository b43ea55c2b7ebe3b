import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashCallerKey } from '../shared/callers.ts';
import { createFileSecretStore } from '../shared/secrets/fileSecretStore.ts';
import { runNodeScript } from './child.ts';
import type { MessageFactory } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';
import { benchIdentity } from './sides.ts';
import { median, round } from './stats.ts';

/**
 * Cold start: fresh `node` processes, spawned asynchronously (this process hosts no server, but the rule
 * holds everywhere), alternating the function app and the bare import. The function app reads its
 * settings from the environment like in Azure, with the local file store: DefaultAzureCredential has no
 * managed identity to reach here. It trusts the peers' certificate through NODE_EXTRA_CA_CERTS.
 */
export interface ColdStartResult {
  runs: number;
  relayImportMs: number;
  relayFirstResponseMs: number;
  bareImportMs: number;
  bareFirstResponseMs: number;
  overheadMs: number;
  /** CPU time (user + system) of the same processes up to the first response: steadier under load. */
  relayCpuMs: number;
  bareCpuMs: number;
  cpuOverheadMs: number;
}

interface ProbeOutput {
  importedMs: number;
  firstResponseMs: number;
  cpuMs: number;
  status: number;
}

async function runProbe(side: 'relay' | 'bare', env: NodeJS.ProcessEnv): Promise<ProbeOutput> {
  const output = await runNodeScript<ProbeOutput>('./coldStartProbe.ts', [side], env);
  if (output.status !== 200) throw new Error(`cold start probe (${side}) answered ${output.status}`);
  return output;
}

export async function measureColdStart(
  peers: PeersReady,
  messages: MessageFactory,
  runs: number,
): Promise<ColdStartResult> {
  const directory = await mkdtemp(join(tmpdir(), 'relay-bench-'));
  try {
    const certificatePath = join(directory, 'peers.pem');
    await writeFile(certificatePath, peers.cert);
    const secretsPath = join(directory, 'secrets.json');
    await createFileSecretStore(secretsPath).setSecret(benchIdentity.secretName, benchIdentity.clientSecret);
    const callerKey = 'bench-cold-start-caller-key-0123456789';
    const sender = 'cold@bench.contoso.com';
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_EXTRA_CA_CERTS: certificatePath,
      BENCH_SMTP_PORT: String(peers.smtpPort),
      BENCH_BODY: messages.json('cold-start', sender).text,
      BENCH_CALLER_KEY: callerKey,
      BENCH_BARE_TOKEN: benchIdentity.bareToken,
      RELAY_TENANT_ID: peers.tenantId,
      RELAY_CLIENT_ID: benchIdentity.clientId,
      RELAY_AUTHORITY_HOST: peers.authorityHost,
      RELAY_CLIENT_SECRET_NAME: benchIdentity.secretName,
      RELAY_LOCAL_SECRETS_PATH: secretsPath,
      RELAY_SMTP_HOST: 'localhost',
      RELAY_SMTP_PORT: String(peers.smtpPort),
      // The probe runs without Azurite; the shared limits' cost is measured in bench/limits.ts.
      RELAY_STATE_STORE: 'memory',
      RELAY_CALLERS: JSON.stringify([
        { name: 'cold', keySha256: hashCallerKey(callerKey), senders: [sender] },
      ]),
    };
    const relay: ProbeOutput[] = [];
    const bare: ProbeOutput[] = [];
    for (let run = 0; run < runs; run += 1) {
      const order = run % 2 === 0 ? (['relay', 'bare'] as const) : (['bare', 'relay'] as const);
      for (const side of order) (side === 'relay' ? relay : bare).push(await runProbe(side, env));
    }
    const relayFirst = median(relay.map((run) => run.firstResponseMs));
    const bareFirst = median(bare.map((run) => run.firstResponseMs));
    const relayCpu = median(relay.map((run) => run.cpuMs));
    const bareCpu = median(bare.map((run) => run.cpuMs));
    return {
      runs,
      relayImportMs: round(median(relay.map((run) => run.importedMs)), 1),
      relayFirstResponseMs: round(relayFirst, 1),
      bareImportMs: round(median(bare.map((run) => run.importedMs)), 1),
      bareFirstResponseMs: round(bareFirst, 1),
      overheadMs: round(relayFirst - bareFirst, 1),
      relayCpuMs: round(relayCpu, 1),
      bareCpuMs: round(bareCpu, 1),
      cpuOverheadMs: round(relayCpu - bareCpu, 1),
    };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
