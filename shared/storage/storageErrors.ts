import { RelayError } from '../errors.ts';

/** Answers that settle a race or report a missing row: 404 Not Found, 409 Conflict, 412 Precondition Failed. */
export type ExpectedStorageStatus = 404 | 409 | 412;

/**
 * Runs one Azure Storage call (queues, tables, blobs). An answer whose status is listed in `expected` is part
 * of the protocol (a row that is not there, an insert or a conditional update another request won) and
 * resolves to undefined. Anything else means the relay cannot persist, which is transient for the caller
 * (the storage account or the network is down) and never a reason to send without a record: it becomes
 * `storage_unavailable` (503, Retry-After).
 */
export function withStorage<T>(operation: () => Promise<T>): Promise<T>;
export function withStorage<T>(
  operation: () => Promise<T>,
  expected: readonly ExpectedStorageStatus[],
): Promise<T | undefined>;
export async function withStorage<T>(
  operation: () => Promise<T>,
  expected: readonly ExpectedStorageStatus[] = [],
): Promise<T | undefined> {
  try {
    return await operation();
  } catch (error) {
    const status = storageStatusOf(error);
    if (status !== undefined && (expected as readonly number[]).includes(status)) return undefined;
    throw storageUnavailable(error);
  }
}

function storageUnavailable(error: unknown): RelayError {
  if (error instanceof RelayError) return error;
  const status = storageStatusOf(error);
  const code = (error as { code?: unknown } | null)?.code;
  return new RelayError('storage_unavailable', {
    message: `The relay could not reach its storage account${status === undefined ? '' : ` (HTTP ${status})`}${typeof code === 'string' ? ` ${code}` : ''}; nothing was sent.`,
  });
}

/** The HTTP status of a RestError from the Azure Storage SDKs. */
function storageStatusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}
