import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashCallerKey } from '../shared/callers.ts';
import { createFileSecretStore } from '../shared/secrets/fileSecretStore.ts';
import { startManagedIdentityPeer } from '../test/peers/managedIdentityPeer.ts';
import { runNodeScript } from './child.ts';
import type { MessageFactory } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';
import { benchIdentity } from './sides.ts';
import { median, round } from './stats.ts';

/**
 * Cold start: fresh `node` processes, spawned asynchronously, alternating the function app with the local
 * secret file, the function app with Key Vault as in production, and the bare function app
 * (bench/coldStartProbe.ts). The function app is the built one (dist/, the bundle Azure runs), reading its
 * settings from the environment like in Azure. With Key Vault it reads the client secret from the Key Vault
 * peer through DefaultAzureCredential, which finds App Service's managed-identity endpoint (a loopback
 * stand-in, served from this process: a few small HTTP answers) through IDENTITY_ENDPOINT and
 * IDENTITY_HEADER. Every process trusts the peers' certificate through NODE_EXTRA_CA_CERTS.
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
  /** The same with Key Vault configured, as in production: RELAY_KEY_VAULT_URL and a managed identity. */
  keyVaultImportMs: number;
  keyVaultFirstResponseMs: number;
  keyVaultOverheadMs: number;
  keyVaultCpuMs: number;
  keyVaultCpuOverheadMs: number;
}

interface ProbeOutput {
  importedMs: number;
  firstResponseMs: number;
  cpuMs: number;
  status: number;
}

type ProbeSide = 'relay' | 'keyVault' | 'bare';

// Key Vault's client refuses a vault outside the challenge's domain; the probe resolves this to the peer.
const loopbackVaultHost = 'relay-bench.vault.azure.net';

function passOn(...names: string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(
    names.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]])),
  );
}

async function runProbe(side: ProbeSide, env: NodeJS.ProcessEnv): Promise<ProbeOutput> {
  const output = await runNodeScript<ProbeOutput>(
    './coldStartProbe.ts',
    [side === 'bare' ? 'bare' : 'relay'],
    env,
  );
  if (output.status !== 200) throw new Error(`cold start probe (${side}) answered ${output.status}`);
  return output;
}

export async function measureColdStart(
  peers: PeersReady,
  messages: MessageFactory,
  runs: number,
): Promise<ColdStartResult> {
  const directory = await mkdtemp(join(tmpdir(), 'relay-bench-'));
  const managedIdentity = await startManagedIdentityPeer({
    issuer: `${peers.authorityHost}/${peers.tenantId}/v2.0`,
  });
  try {
    const certificatePath = join(directory, 'peers.pem');
    await writeFile(certificatePath, peers.cert);
    const secretsPath = join(directory, 'secrets.json');
    await createFileSecretStore(secretsPath).setSecret(benchIdentity.secretName, benchIdentity.clientSecret);
    const callerKey = 'bench-cold-start-caller-key-0123456789';
    const sender = 'cold@bench.contoso.com';
    const common: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_EXTRA_CA_CERTS: certificatePath,
      BENCH_SMTP_PORT: String(peers.smtpPort),
      BENCH_BODY: messages.json('cold-start', sender).text,
      BENCH_CALLER_KEY: callerKey,
      BENCH_BARE_TOKEN: benchIdentity.bareToken,
      // BENCH_APP_ROOT measures another build; NODE_OPTIONS profiles the probes (--cpu-prof).
      ...passOn('BENCH_APP_ROOT', 'NODE_OPTIONS'),
      RELAY_TENANT_ID: peers.tenantId,
      RELAY_CLIENT_ID: benchIdentity.clientId,
      RELAY_AUTHORITY_HOST: peers.authorityHost,
      RELAY_CLIENT_SECRET_NAME: benchIdentity.secretName,
      RELAY_SMTP_HOST: 'localhost',
      RELAY_SMTP_PORT: String(peers.smtpPort),
      // The probe runs without Azurite; the shared limits' cost is measured in bench/limits.ts.
      RELAY_STATE_STORE: 'memory',
      RELAY_CALLERS: JSON.stringify([
        { name: 'cold', keySha256: hashCallerKey(callerKey), senders: [sender] },
      ]),
    };
    const environments: Record<ProbeSide, NodeJS.ProcessEnv> = {
      relay: { ...common, RELAY_LOCAL_SECRETS_PATH: secretsPath },
      keyVault: {
        ...common,
        RELAY_KEY_VAULT_URL: `https://${loopbackVaultHost}:${new URL(peers.vaultUrl).port}`,
        RELAY_MANAGED_IDENTITY_CLIENT_ID: managedIdentity.clientId,
        IDENTITY_ENDPOINT: managedIdentity.endpoint,
        IDENTITY_HEADER: managedIdentity.header,
        BENCH_VAULT_HOST: loopbackVaultHost,
      },
      bare: common,
    };
    const outputs: Record<ProbeSide, ProbeOutput[]> = { relay: [], keyVault: [], bare: [] };
    const sides: ProbeSide[] = ['relay', 'keyVault', 'bare'];
    for (let run = 0; run < runs; run += 1) {
      // A different side goes first each run, so none always runs right after another's CPU burst.
      for (let step = 0; step < sides.length; step += 1) {
        const side = sides[(run + step) % sides.length] as ProbeSide;
        outputs[side].push(await runProbe(side, environments[side]));
      }
    }
    const medianOf = (side: ProbeSide, figure: keyof ProbeOutput) =>
      median(outputs[side].map((output) => output[figure]));
    const bareFirst = medianOf('bare', 'firstResponseMs');
    const bareCpu = medianOf('bare', 'cpuMs');
    return {
      runs,
      relayImportMs: round(medianOf('relay', 'importedMs'), 1),
      relayFirstResponseMs: round(medianOf('relay', 'firstResponseMs'), 1),
      bareImportMs: round(medianOf('bare', 'importedMs'), 1),
      bareFirstResponseMs: round(bareFirst, 1),
      overheadMs: round(medianOf('relay', 'firstResponseMs') - bareFirst, 1),
      relayCpuMs: round(medianOf('relay', 'cpuMs'), 1),
      bareCpuMs: round(bareCpu, 1),
      cpuOverheadMs: round(medianOf('relay', 'cpuMs') - bareCpu, 1),
      keyVaultImportMs: round(medianOf('keyVault', 'importedMs'), 1),
      keyVaultFirstResponseMs: round(medianOf('keyVault', 'firstResponseMs'), 1),
      keyVaultOverheadMs: round(medianOf('keyVault', 'firstResponseMs') - bareFirst, 1),
      keyVaultCpuMs: round(medianOf('keyVault', 'cpuMs'), 1),
      keyVaultCpuOverheadMs: round(medianOf('keyVault', 'cpuMs') - bareCpu, 1),
    };
  } finally {
    await managedIdentity.close();
    await rm(directory, { recursive: true, force: true });
  }
}
