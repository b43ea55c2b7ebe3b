import { RelayError } from '../errors.ts';

/**
 * Azure Storage answers (RestError from the SDKs) that the relay expects: a precondition or conflict is a
 * lost race another request won; anything else means the relay cannot persist, which is transient for the
 * caller (the storage account or the network is down) and never a reason to send without a record.
 */
export function storageStatusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

export const isConflict = (error: unknown): boolean => storageStatusOf(error) === 409;
export const isPreconditionFailed = (error: unknown): boolean => storageStatusOf(error) === 412;
export const isNotFound = (error: unknown): boolean => storageStatusOf(error) === 404;

export function storageUnavailable(error: unknown): RelayError {
  if (error instanceof RelayError) return error;
  const status = storageStatusOf(error);
  const code = (error as { code?: unknown } | null)?.code;
  return new RelayError('storage_unavailable', {
    message: `The relay could not reach its storage account${status === undefined ? '' : ` (HTTP ${status})`}${typeof code === 'string' ? ` ${code}` : ''}; nothing was sent.`,
  });
}
