import { spawn } from 'node:child_process';

/**
 * Runs a bench script in a fresh `node` process, asynchronously (never spawnSync from a process that may
 * host servers), and returns the first JSON line it prints.
 */
export function runNodeScript<T>(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL(script, import.meta.url).pathname, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((text) => text.startsWith('{'));
      if (code !== 0 || line === undefined) {
        reject(new Error(`${script} ${args.join(' ')} exited with ${code}: ${stderr.slice(-2000)}`));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}
