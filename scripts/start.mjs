// npm start: runs the function app locally with Azure Functions Core Tools (`func`). Core Tools is an
// optional dependency because its installer downloads binaries from a CDN; when it is missing, say what
// to install instead of failing obscurely.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
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

// The timer and queue triggers need storage (UseDevelopmentStorage=true): start Azurite from the
// devDependency unless something already listens on its blob port.
function listening(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

let azurite;
if (!(await listening(10000))) {
  const azuriteBin = join(root, 'node_modules', '.bin', 'azurite');
  if (existsSync(azuriteBin)) {
    console.log('Starting Azurite (local Azure Storage) on 127.0.0.1:10000-10002, data in .data/azurite');
    azurite = spawn(
      azuriteBin,
      [
        '--silent',
        '--skipApiVersionCheck',
        '--disableTelemetry',
        '--location',
        join(root, '.data', 'azurite'),
      ],
      { cwd: root, stdio: 'ignore' },
    );
  } else {
    console.warn(
      'Azurite is not installed (npm install brings it): timers and queued sending need local storage.',
    );
  }
}

const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const host = spawn(func, ['start', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
host.on('exit', (code) => {
  azurite?.kill();
  process.exit(code ?? 0);
});
