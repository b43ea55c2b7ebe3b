// One cold start, in a fresh process: import the function app (every dist/functions/*.js, as the Functions
// host does) and handle one send request, or, for comparison, import only @azure/functions and nodemailer
// and send the same message with a fixed token. Prints one JSON line of milliseconds since process start.
import { readdir } from 'node:fs/promises';

const side = process.argv[2];
const smtpPort = Number(process.env.BENCH_SMTP_PORT);
const body = process.env.BENCH_BODY ?? '';

async function relay(): Promise<{ importedMs: number; status: number }> {
  const entry = new URL('../dist/functions/', import.meta.url);
  const files = (await readdir(entry)).filter((file) => file.endsWith('.js')).sort();
  for (const file of files) await import(new URL(file, entry).href);
  const importedMs = performance.now();
  // What the Functions host calls: the registered send function, with the runtime built from settings.
  const { functionApp, httpHandler } = await import(new URL('register.js', entry).href);
  const { runtimeFromEnvironment } = await import(new URL('../shared/runtime.js', entry).href);
  const send = httpHandler(functionApp.http.get('send'), runtimeFromEnvironment);
  const { default: functions } = await import('@azure/functions');
  const request = new functions.HttpRequest({
    method: 'POST',
    url: 'http://localhost:7071/api/send',
    headers: { 'content-type': 'application/json', 'x-relay-key': process.env.BENCH_CALLER_KEY ?? '' },
    body: { string: body },
  });
  const context = new functions.InvocationContext({ functionName: 'send', logHandler: () => {} });
  const response = await send(request, context);
  return { importedMs, status: response.status ?? 200 };
}

async function bare(): Promise<{ importedMs: number; status: number }> {
  const { default: functions } = await import('@azure/functions');
  const { default: nodemailer } = await import('nodemailer');
  const importedMs = performance.now();
  const request = new functions.HttpRequest({
    method: 'POST',
    url: 'http://localhost:7071/api/send',
    headers: { 'content-type': 'application/json' },
    body: { string: body },
  });
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
  await transport.sendMail(message);
  transport.close();
  return { importedMs, status: 200 };
}

const result = side === 'relay' ? await relay() : await bare();
const firstResponseMs = performance.now();
// CPU time as well: on a busy machine wall time swings with other load, CPU time much less.
const cpu = process.cpuUsage();
console.log(JSON.stringify({ side, ...result, firstResponseMs, cpuMs: (cpu.user + cpu.system) / 1000 }));
// Pooled connections would keep the process alive; the measurement is done.
process.exit(0);
