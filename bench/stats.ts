/** Percentile by nearest rank, on a copy (the input keeps its order). */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

export function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

export const round = (value: number, digits = 2) => Number(value.toFixed(digits));
export const megabytes = (bytes: number) => round(bytes / 1024 / 1024, 1);
