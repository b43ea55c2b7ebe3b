/**
 * `npm start` without Core Tools: serves the built function app on http://localhost:7071 with the
 * development host (devhost/devHost.ts). Loads local.settings.json's Values into the environment as
 * `func start` does (a variable already set in the environment wins), imports the files package.json's
 * `main` names (as the Functions host does), and stops cleanly on Ctrl+C or SIGTERM.
 * Arguments: `--port <n>` (7071 by default; 0 picks a free port).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { functionApp } from '../functions/register.ts';
import { appRoot, prefixedPath } from '../shared/api/hostJson.ts';
import { httpRoutes } from '../shared/api/routes.ts';
import { runtimeFromEnvironment } from '../shared/runtime.ts';
import { startDevHost } from './devHost.ts';

function loadLocalSettings(root: string): void {
  const path = join(root, 'local.settings.json');
  if (!existsSync(path)) return;
  const { Values } = JSON.parse(readFileSync(path, 'utf8')) as { Values?: Record<string, string> };
  for (const [name, value] of Object.entries(Values ?? {})) process.env[name] ??= String(value);
}

/** The Functions host's `main`: a path or a `dir/*.js` glob below the app root. */
function functionFiles(root: string): string[] {
  const { main } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string };
  const directory = join(root, dirname(main));
  const pattern = basename(main);
  if (!pattern.includes('*')) return [join(root, main)];
  const [prefix = '', suffix = ''] = pattern.split('*');
  return readdirSync(directory)
    .filter((name) => name.startsWith(prefix) && name.endsWith(suffix))
    .map((name) => join(directory, name));
}

/** Outside the Functions host, @azure/functions notes each registration it skips; here they are served. */
async function importQuietly(files: string[]): Promise<void> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).includes('"@azure/functions" package')) warn(...args);
  };
  try {
    for (const file of files) await import(pathToFileURL(file).href);
  } finally {
    console.warn = warn;
  }
}

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
}

const root = appRoot();
loadLocalSettings(root);
await importQuietly(functionFiles(root));
const write = (line: string) => process.stdout.write(`[${new Date().toISOString()}] ${line}\n`);
const host = await startDevHost({
  functionApp,
  runtime: runtimeFromEnvironment,
  port: Number(argument('--port') ?? 7071),
  hostname: 'localhost',
  log: write,
});
write('Functions (development host; function and admin keys are not checked, as with func start):');
for (const [name, route] of Object.entries(httpRoutes))
  write(`  ${name}: [${route.method}] ${host.origin}${prefixedPath(route.route)}`);
for (const name of functionApp.timers.keys()) write(`  ${name}: timer`);
for (const name of functionApp.queues.keys()) write(`  ${name}: queue trigger`);
write(`Listening on ${host.origin}`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    write(`${signal}: stopping`);
    host.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
