// npm run check:bicep (part of npm test): infra/main.bicep and the modules it uses must build and lint with
// the real Bicep compiler with zero errors and zero warnings. The compiler is not on npm; it is the NuGet
// package that infra/tools/bicep-cli.csproj names, restored with dotnet into .tools/ (gitignored). The CLI
// exits 0 on warnings, so its diagnostics are read and counted here.
//
//   node scripts/check-bicep.mjs            check; restore the CLI first if dotnet is there and it is missing;
//                                           without dotnet (and no CLI in .tools/) say so in one line, exit 0
//   node scripts/check-bicep.mjs --restore  only make sure the CLI is in .tools/; fail if it cannot be (CI)
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const recipe = join(root, 'infra', 'tools', 'bicep-cli.csproj');
const template = join(root, 'infra', 'main.bicep');
const restoreOnly = process.argv.includes('--restore');

// The recipe is the one place that names the package and its version.
const download = /<PackageDownload Include="([^"]+)" Version="\[([^\]]+)\]"/.exec(
  readFileSync(recipe, 'utf8'),
);
if (download === null)
  fail(`${relative(root, recipe)} names no <PackageDownload Include="..." Version="[x.y.z]">`);
const [, packageId, version] = download;
// NuGet's global-packages layout: <lower-case id>/<version>/, the executable in tools/.
const bicep = join(root, '.tools', 'nuget', packageId.toLowerCase(), version, 'tools', 'bicep');
const packagePlatform = packageId.slice(packageId.lastIndexOf('.') + 1);
const platform = `${process.platform}-${process.arch}`;

if (!existsSync(bicep)) {
  const unavailable =
    platform !== packagePlatform
      ? `the Bicep CLI restored here is the ${packagePlatform} build and this machine is ${platform}`
      : !hasDotnet()
        ? `dotnet is not on PATH, so the Bicep CLI (NuGet ${packageId} ${version}) cannot be restored into .tools/`
        : undefined;
  if (unavailable !== undefined) {
    if (restoreOnly) fail(`cannot restore the Bicep CLI: ${unavailable}`);
    console.log(`Bicep check skipped: ${unavailable}.`);
    process.exit(0);
  }
  restore();
}
ensureExecutable(bicep);
if (restoreOnly) {
  console.log(`Bicep CLI ${version} is in ${relative(root, bicep)}`);
  process.exit(0);
}

// --no-restore: the template uses Bicep's built-in types only, no registry modules, so it compiles offline.
const outDir = mkdtempSync(join(tmpdir(), 'check-bicep-'));
let problems = 0;
try {
  const outFile = join(outDir, 'main.json');
  problems += check('build', ['build', template, '--no-restore', '--outfile', outFile]);
  // A build that reported no error has written the ARM template; make sure it is there and is JSON.
  if (problems === 0) JSON.parse(readFileSync(outFile, 'utf8'));
  problems += check('lint', ['lint', template, '--no-restore']);
} finally {
  rmSync(outDir, { recursive: true, force: true });
}
process.exit(problems === 0 ? 0 : 1);

/** Runs one bicep command, prints its diagnostics and a count; returns how many errors and warnings it had. */
function check(command, args) {
  const run = spawnSync(bicep, args, { cwd: root, encoding: 'utf8' });
  if (run.error !== undefined) fail(`cannot run ${relative(root, bicep)}: ${run.error.message}`);
  // Bicep's default diagnostics format, one per line: <file>(<line>,<column>) : <Level> <code>: <message>
  const diagnostics = `${run.stdout}\n${run.stderr}`
    .split('\n')
    .map((line) => /^(.+)\((\d+),(\d+)\) : (Error|Warning|Info) ([\w-]+): (.*)$/.exec(line.trim()))
    .filter((match) => match !== null)
    .map(([, file, line, column, level, code, message]) => ({ file, line, column, level, code, message }));
  for (const { file, line, column, level, code, message } of diagnostics)
    console.log(`  ${relative(root, file)}:${line}:${column} ${level} ${code}: ${message}`);
  const errors = diagnostics.filter((diagnostic) => diagnostic.level === 'Error').length;
  const warnings = diagnostics.filter((diagnostic) => diagnostic.level === 'Warning').length;
  console.log(
    `bicep ${command} ${relative(root, template)} (Bicep CLI ${version}): ${count(errors, 'error')}, ${count(warnings, 'warning')}`,
  );
  if (run.status !== 0 && errors === 0) {
    // A failure the CLI did not report as a diagnostic (a crash, a bad argument): show what it said.
    process.stdout.write(run.stdout);
    process.stderr.write(run.stderr);
    return 1;
  }
  return errors + warnings;
}

function count(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function hasDotnet() {
  return spawnSync('dotnet', ['--version'], { stdio: 'ignore' }).error === undefined;
}

function restore() {
  console.log(`Restoring the Bicep CLI (NuGet ${packageId} ${version}) into .tools/ with dotnet`);
  const run = spawnSync(
    'dotnet',
    // The restore's bookkeeping (obj/) goes to .tools/ too, so the work tree stays clean.
    ['restore', recipe, `-p:MSBuildProjectExtensionsPath=${join(root, '.tools', 'obj')}/`],
    {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, DOTNET_NOLOGO: '1', DOTNET_CLI_TELEMETRY_OPTOUT: '1' },
    },
  );
  if (run.status !== 0 || !existsSync(bicep)) {
    process.stdout.write(run.stdout ?? '');
    process.stderr.write(run.stderr ?? '');
    fail(`dotnet restore ${relative(root, recipe)} did not produce ${relative(root, bicep)}`);
  }
}

/** NuGet does not always keep the executable bit when it extracts a package. */
function ensureExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    chmodSync(file, 0o755);
  }
}

function fail(message) {
  console.error(`Bicep check failed: ${message}`);
  process.exit(1);
}
