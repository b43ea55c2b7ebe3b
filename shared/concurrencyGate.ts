/**
 * Lets at most `limit` tasks run at once; the rest wait in arrival order. Used where work is CPU-bound
 * anyway (one JavaScript thread), so running it one at a time costs no throughput, but running it
 * interleaved would keep every task's intermediate data alive at the same time.
 */
export interface ConcurrencyGate {
  run<T>(task: () => Promise<T>): Promise<T>;
}

export function createConcurrencyGate(limit: number): ConcurrencyGate {
  let running = 0;
  const waiting: (() => void)[] = [];

  function release(): void {
    const next = waiting.shift();
    if (next === undefined) running -= 1;
    else next();
  }

  return {
    async run(task) {
      if (running < limit) running += 1;
      else await new Promise<void>((resolve) => waiting.push(resolve));
      try {
        return await task();
      } finally {
        release();
      }
    },
  };
}
