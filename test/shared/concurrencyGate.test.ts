import { describe, expect, it } from 'vitest';
import { createConcurrencyGate } from '../../shared/concurrencyGate.ts';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<void>((done, fail) => {
    resolve = done;
    reject = fail;
  });
  return { promise, resolve, reject };
}

describe('concurrency gate', () => {
  it('runs at most the limit at once and starts the waiting tasks in arrival order', async () => {
    const gate = createConcurrencyGate(2);
    const started: number[] = [];
    const finish = [deferred(), deferred(), deferred(), deferred()];
    const runs = finish.map((step, index) =>
      gate.run(async () => {
        started.push(index);
        await step.promise;
        return index;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    finish[1]?.resolve();
    await runs[1];
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]);
    for (const step of finish) step.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
  });

  it('frees the slot of a task that fails', async () => {
    const gate = createConcurrencyGate(1);
    const failing = deferred();
    const first = gate.run(() => failing.promise);
    const second = gate.run(async () => 'ran');
    failing.reject(new Error('bad body'));
    await expect(first).rejects.toThrow('bad body');
    expect(await second).toBe('ran');
  });
});
