// One cold start, in a fresh process, under a stand-in for the Functions worker (bench/coldStartWorker.ts):
// load the built function app (every dist/functions/*.js, as the host names them in package.json `main`)
// and invoke its send function once, or, for comparison, a bare function app: @azure/functions and
// nodemailer only, one HTTP function that sends the same message with a fixed token. Both are invoked the
// same way, through their own @azure/functions in HTTP streaming mode. Prints one JSON line of
// milliseconds since process start.
import dns from 'node:dns';
import { readdir } from 'node:fs/promises';
import tls from 'node:tls';
import { installWorkerStandIn, type WorkerStandIn } from './coldStartWorker.ts';

const side = process.argv[2];
const smtpPort = Number(process.env.BENCH_SMTP_PORT);
const body = process.env.BENCH_BODY ?? '';
// The built app to load; the repository's dist/ unless told (to compare with another build).
const appRoot = new URL(process.env.BENCH_APP_ROOT ?? '../', import.meta.url);

/**
 * Key Vault's client accepts only a vault whose name ends in the challenge's domain (vault.azure.net), so
 * the loopback vault is given such a name; this process resolves it to the loopback and accepts the peer's
 * localhost certificate for it. Nothing else of the connection changes.
 */
function resolveToLoopback(host: string): void {
  const lookup = dns.lookup as (...args: unknown[]) => void;
  (dns as { lookup: unknown }).lookup = (name: string, ...rest: unknown[]) =>
    lookup(name === host ? 'localhost' : name, ...rest);
  const checkServerIdentity = tls.checkServerIdentity;
  tls.checkServerIdentity = (name, certificate) =>
    checkServerIdentity(name === host ? 'localhost' : name, certificate);
}

async function sendOnce(worker: WorkerStandIn, headers: Record<string, string>): Promise<number> {
  const answer = await worker.invokeHttp('send', {
    method: 'POST',
    path: '/api/send',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return answer.status;
}

async function relay(worker: WorkerStandIn): Promise<{ importedMs: number; status: number }> {
  const entry = new URL('dist/functions/', appRoot);
  const files = (await readdir(entry)).filter((file) => file.endsWith('.js')).sort();
  await worker.load(files.map((file) => new URL(file, entry)));
  const importedMs = performance.now();
  const status = await sendOnce(worker, { 'x-relay-key': process.env.BENCH_CALLER_KEY ?? '' });
  return { importedMs, status };
}

async function bare(worker: WorkerStandIn): Promise<{ importedMs: number; status: number }> {
  const { app } = await import('@azure/functions');
  const { default: nodemailer } = await import('nodemailer');
  app.setup({ enableHttpStream: true });
  app.http('send', {
    route: 'api/send',
    methods: ['POST'],
    authLevel: 'anonymous',
    handler: async (request) => {
      const message = (await request.json()) as { from: string; to: string; subject: string; text: string };
      const transport = nodemailer.createTransport({
        pool: true,
        maxConnections: 3,
        host: 'localhost',
        port: smtpPort,
        secure: false,
        requireTLS: true,
        tls: { minVersion: 'TLSv1.2', servername: 'localhost' },
        auth: { type: 'OAuth2', user: message.from, accessToken: process.env.BENCH_BARE_TOKEN ?? '' },
      });
      const info = await transport.sendMail(message);
      transport.close();
      return { status: 200, jsonBody: { messageId: info.messageId } };
    },
  });
  await worker.load([]);
  const importedMs = performance.now();
  return { importedMs, status: await sendOnce(worker, {}) };
}

const vaultHost = process.env.BENCH_VAULT_HOST;
if (vaultHost !== undefined) resolveToLoopback(vaultHost);
const worker = installWorkerStandIn();
const result = side === 'relay' ? await relay(worker) : await bare(worker);
const firstResponseMs = performance.now();
// CPU time as well: on a busy machine wall time swings with other load, CPU time much less.
const cpu = process.cpuUsage();
console.log(JSON.stringify({ side, ...result, firstResponseMs, cpuMs: (cpu.user + cpu.system) / 1000 }));
// Pooled connections would keep the process alive; the measurement is done.
process.exit(0);
