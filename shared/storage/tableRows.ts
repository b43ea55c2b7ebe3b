import type { TableClient } from '@azure/data-tables';
import { withStorage } from './storageErrors.ts';

/**
 * Deletes every row of a table that an OData filter selects, reading only the keys; a row another
 * instance deleted first is not counted. For the timer's housekeeping: a full scan, never on a send.
 */
export async function removeRowsWhere(table: TableClient, filter: string): Promise<number> {
  const rows = await withStorage(async () => {
    const found: { partitionKey: string; rowKey: string }[] = [];
    const query = table.listEntities<{ partitionKey: string; rowKey: string }>({
      queryOptions: { filter, select: ['PartitionKey', 'RowKey'] },
    });
    for await (const row of query) found.push({ partitionKey: row.partitionKey, rowKey: row.rowKey });
    return found;
  });
  let removed = 0;
  for (const row of rows) {
    if ((await withStorage(() => table.deleteEntity(row.partitionKey, row.rowKey), [404])) !== undefined)
      removed += 1;
  }
  return removed;
}
