// npm run build: bundles the function app into dist/ with esbuild, the way it is deployed.
//
// Why a bundle: a cold start (which a consumption plan pays often) spent most of its time resolving and
// compiling some thousand files of node_modules one by one; a bundle is a handful of files and needs no
// node_modules at run time. Layout:
//   dist/functions/<name>.js  one entry per functions/*.ts file that registers functions: what package.json
//                             `main` (dist/functions/*.js) names, so the Functions host loads each of them
//   dist/devhost/main.js      the development host (npm start without Core Tools), serving the same modules
//   dist/chunks/*.js          code shared by the entries. Splitting keeps one copy of every module per
//                             process: one `functionApp` table, one runtime, one RelayError class for
//                             `instanceof`, one @azure/functions (which the host's worker talks to)
// Each file has a source map beside it (Node maps stack traces with --enable-source-maps).
// The type check is `npm run typecheck`; esbuild only strips types.
// Deployed are dist/, host.json and package.json (.funcignore): node_modules is not needed at run time.
import { readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
// `--outdir <dir>` bundles elsewhere (the bundle's tests build a copy of the app in a directory of their own).
const outdirArgument = process.argv.indexOf('--outdir');
const outdir =
  outdirArgument === -1 ? join(root, 'dist') : resolve(process.argv[outdirArgument + 1] ?? 'dist');

// A file that registers functions calls one of functions/register.ts's register* helpers; register.ts
// itself, httpEdge.ts and other library modules of functions/ are reached through those entries.
const registration = /\bregister(?:Http|RuntimeFreeHttp|Timer|Queue)\(/;

async function functionEntries() {
  const directory = join(root, 'functions');
  const entries = [];
  for (const name of (await readdir(directory)).sort()) {
    if (!name.endsWith('.ts') || name === 'register.ts') continue;
    const path = join(directory, name);
    if (registration.test(await readFile(path, 'utf8'))) entries.push(path);
  }
  return entries;
}

// The sources load some heavy packages on first use, from a require function made with
// createRequire(import.meta.url) (shared/tokens/loadMsal.ts, shared/storage/relayStorage.ts), so a cold start
// that never needs them does not compile them. esbuild would put such a package in a chunk every entry
// imports (compiled at start-up: some 60 ms for the storage SDKs and MSAL), so each becomes a file of its own,
// dist/lazy/<package>.cjs, which the call requires at run time. Every import of that package anywhere in
// the app (@azure/identity imports MSAL) is pointed at the same file: one copy per process.
const sourceDirectories = ['functions', 'shared', 'devhost'];
const createRequireBinding = /const (\w+) = createRequire\(import\.meta\.url\);/;

async function sourceFiles(directory) {
  const files = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) files.push(path);
  }
  return files;
}

function lazyRequireCall(name) {
  return new RegExp(`\\b${name}\\((['"])([^'"]+)\\1\\)`, 'g');
}

async function lazyPackages() {
  const packages = new Set();
  for (const directory of sourceDirectories)
    for (const path of await sourceFiles(join(root, directory))) {
      const source = await readFile(path, 'utf8');
      const binding = createRequireBinding.exec(source);
      if (binding === null) continue;
      for (const call of source.matchAll(lazyRequireCall(binding[1]))) packages.add(call[2]);
    }
  return [...packages].sort();
}

const lazyFileName = (name) => name.replace(/^@/, '').replace(/\//g, '-');
// Every output file lies one directory below dist/ (functions/, devhost/, chunks/), so one relative path
// reaches dist/lazy/ from each.
const lazyPath = (name) => `../lazy/${lazyFileName(name)}.cjs`;

function lazyLoads(packages) {
  return {
    name: 'lazy-loads',
    setup(esbuild) {
      const names = new Set(packages);
      // An import of the package becomes a require of its file: an ES module import of a CommonJS file
      // would have Node scan all of it for export names first (some 40 ms for MSAL).
      esbuild.onResolve({ filter: /^[@a-z]/ }, ({ path }) =>
        names.has(path) ? { path, namespace: 'lazy-load' } : undefined,
      );
      esbuild.onLoad({ filter: /.*/, namespace: 'lazy-load' }, ({ path }) => ({
        contents: `module.exports = require(${JSON.stringify(lazyPath(path))});`,
        loader: 'js',
      }));
      esbuild.onResolve({ filter: /^\.\.\/lazy\// }, ({ path }) => ({ path, external: true }));
      esbuild.onLoad({ filter: /\.ts$/ }, async ({ path }) => {
        if (path.includes('/node_modules/')) return undefined;
        const source = await readFile(path, 'utf8');
        const binding = createRequireBinding.exec(source);
        if (binding === null) return { contents: source, loader: 'ts' };
        const contents = source
          .replace(binding[0], '')
          .replaceAll(
            lazyRequireCall(binding[1]),
            (_call, _quote, name) => `require(${JSON.stringify(lazyPath(name))})`,
          );
        return { contents, loader: 'ts' };
      });
    },
  };
}

// zod's namespace export carries every translation of its messages (about 300 KB of the start-up chunk,
// compiled at every cold start); the relay reports in English only, so its locale index is the English one.
function englishOnlyZod() {
  return {
    name: 'english-only-zod',
    setup(esbuild) {
      esbuild.onResolve({ filter: /\/locales\/index\.js$/ }, ({ path, importer, resolveDir }) => {
        if (!/[\\/]node_modules[\\/]zod[\\/]/.test(importer)) return undefined;
        return { path: join(resolveDir, path), namespace: 'zod-locales' };
      });
      esbuild.onLoad({ filter: /.*/, namespace: 'zod-locales' }, ({ path }) => ({
        contents: `export { default as en } from ${JSON.stringify(join(dirname(path), 'en.js'))};`,
        resolveDir: dirname(path),
      }));
    },
  };
}

// Bundled CommonJS code requires Node built-ins (and the worker's @azure/functions-core) through `require`,
// which an ES module lacks; every output file gets its own.
const banner = [
  "import { createRequire as __bundleCreateRequire } from 'node:module';",
  'const require = __bundleCreateRequire(import.meta.url);',
].join('\n');

const common = {
  absWorkingDir: root,
  outdir,
  bundle: true,
  platform: 'node',
  target: 'node22',
  sourcemap: 'linked',
  // Stack traces need only the mappings; the sources stay in the repository.
  sourcesContent: false,
  metafile: true,
  logLevel: 'warning',
};

await rm(outdir, { recursive: true, force: true });
const packages = await lazyPackages();
const app = await build({
  ...common,
  absWorkingDir: root,
  entryPoints: [...(await functionEntries()), join(root, 'devhost', 'main.ts')],
  outbase: root,
  entryNames: '[dir]/[name]',
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  format: 'esm',
  banner: { js: banner },
  // Provided by the Functions worker at run time; @azure/functions requires it lazily.
  external: ['@azure/functions-core'],
  plugins: [lazyLoads(packages), englishOnlyZod()],
});
// Each lazily loaded package as one CommonJS file. Built from its ES module build, so the file lists its
// export names where Node's ES module loader finds them (an `import { X }` of it works).
const lazy = await build({
  ...common,
  entryPoints: packages.map((name) => ({ in: `lazy:${name}`, out: `lazy/${lazyFileName(name)}` })),
  format: 'cjs',
  outExtension: { '.js': '.cjs' },
  plugins: [
    {
      name: 'lazy-entries',
      setup(esbuild) {
        esbuild.onResolve({ filter: /^lazy:/ }, ({ path }) => ({ path: path.slice(5), namespace: 'lazy' }));
        esbuild.onLoad({ filter: /.*/, namespace: 'lazy' }, ({ path }) => ({
          contents: `export * from ${JSON.stringify(path)};`,
          resolveDir: root,
        }));
      },
    },
  ],
});

const outputs = [app, lazy]
  .flatMap((result) => Object.entries(result.metafile.outputs))
  .filter(([path]) => /\.c?js$/.test(path));
const kilobytes = outputs.reduce((sum, [, output]) => sum + output.bytes, 0) / 1024;
console.log(`Bundled ${outputs.length} files (${kilobytes.toFixed(0)} KiB) into ${relative(root, outdir)}/`);
