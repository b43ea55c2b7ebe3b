// npm start: runs the function app locally. With Azure Functions Core Tools (`func`) installed it runs
// `func start`; Core Tools is an optional dependency because its installer downloads binaries from a CDN
// that many machines cannot reach, so without it the project's own development host (devhost/) serves
// the same function app: every HTTP route, the timer and the queue trigger. Arguments go to either
// (`npm start -- --port 7072`); `--skip-build` serves what dist/ already holds.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
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
  console.log(
    'Azure Functions Core Tools (func) is not installed: serving the app with the development host (devhost/).',
  );
}

// The timer and queue triggers need storage: with UseDevelopmentStorage=true, start Azurite from the
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

// The storage the app will use: the environment wins over local.settings.json, as in the hosts.
const { Values: localValues = {} } = JSON.parse(readFileSync(join(root, 'local.settings.json'), 'utf8'));
const storageConnection =
  process.env.RELAY_STORAGE_CONNECTION ??
  localValues.RELAY_STORAGE_CONNECTION ??
  'UseDevelopmentStorage=true';
const usesAzurite = /^UseDevelopmentStorage=true$/i.test(storageConnection.trim());

let azurite;
if (usesAzurite && !(await listening(10000))) {
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

const args = process.argv.slice(2).filter((arg) => arg !== '--skip-build');
if (!process.argv.includes('--skip-build')) {
  const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

const host =
  func === undefined
    ? spawn(process.execPath, [join(root, 'dist', 'devhost', 'main.js'), ...args], {
        cwd: root,
        stdio: 'inherit',
      })
    : spawn(func, ['start', ...args], { cwd: root, stdio: 'inherit' });
// Ctrl+C reaches the whole process group; SIGTERM (from a service manager or a test) is passed on.
process.once('SIGTERM', () => host.kill('SIGTERM'));
host.on('exit', (code) => {
  azurite?.kill();
  process.exit(code ?? 0);
});
