// npm start: runs the function app locally with Azure Functions Core Tools (`func`). Core Tools is an
// optional dependency because its installer downloads binaries from a CDN; when it is missing, say what
// to install instead of failing obscurely.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function findFunc() {
  const local = join(root, 'node_modules', '.bin', 'func');
  const candidates = [local, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'func'))];
  return candidates.find((candidate) => existsSync(candidate));
}

if (!existsSync(join(root, 'local.settings.json'))) {
  copyFileSync(join(root, 'local.settings.sample.json'), join(root, 'local.settings.json'));
  console.log(
    'Created local.settings.json from local.settings.sample.json (embedded defaults; edit it to connect your tenant).',
  );
}

const func = findFunc();
if (func === undefined) {
  console.error(`Azure Functions Core Tools (func) is not installed, so the function app cannot start.
Install Core Tools 4.x, then run npm start again:
  npm install -g azure-functions-core-tools@4      (needs access to Microsoft's CDN)
  or see https://learn.microsoft.com/azure/azure-functions/functions-run-local#install-the-azure-functions-core-tools
The tests do not need it: npm test runs every function handler against local protocol peers.`);
  process.exit(1);
}

const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const host = spawn(func, ['start', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
host.on('exit', (code) => process.exit(code ?? 0));
