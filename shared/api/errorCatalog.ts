import { type ErrorArea, type ErrorCode, errorCodes } from '../errorCodes.ts';

export type { ErrorArea } from '../errorCodes.ts';

/**
 * The error table (shared/errorCodes.ts) as a list, for the API description (shared/api/openApi.ts): each
 * code with its status, its area and whether a caller may retry it after Retry-After.
 */
export interface ErrorCatalogEntry {
  code: ErrorCode;
  status: number;
  area: ErrorArea;
  /** One line: what happened. docs/troubleshooting.md says how to fix it. */
  title: string;
  retryable: boolean;
}

export const errorCatalog: readonly ErrorCatalogEntry[] = (Object.keys(errorCodes) as ErrorCode[]).map(
  (code) => {
    const { status, area, title, retryAfterSeconds } = errorCodes[code];
    return { code, status, area, title, retryable: retryAfterSeconds !== undefined };
  },
);

export function errorsIn(areas: readonly ErrorArea[]): ErrorCatalogEntry[] {
  return errorCatalog.filter((entry) => areas.includes(entry.area));
}
