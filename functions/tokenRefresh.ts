import type { InvocationContext, Timer } from '@azure/functions';
import type { RefreshReport } from '../shared/delegated/tokenMaintenance.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerTimer } from './register.ts';

/**
 * Timer tokenRefresh (RELAY_TOKEN_REFRESH_SCHEDULE, every 6 hours by default): keeps every delegated
 * mailbox's refresh token alive and rotated, records per-mailbox health, announces what alerts have not,
 * warns before the app's credential expires, and removes expired state. A failing mailbox is logged as a warning; the others are refreshed regardless.
 */
export async function tokenRefresh(
  _timer: Timer,
  runtime: Runtime,
  context: InvocationContext,
): Promise<RefreshReport> {
  const report = await runtime.maintenance.refreshAll();
  for (const outcome of report.mailboxes) {
    if (outcome.ok) context.log(`token refresh ${outcome.mailbox}: ok`);
    else
      context.warn(
        `token refresh ${outcome.mailbox}: ${outcome.code ?? 'failed'}${outcome.aadsts === undefined ? '' : ` (${outcome.aadsts})`}${outcome.needsConsent ? '; needs a new sign-in' : ''}`,
      );
  }
  const { credential, housekeeping, migration } = report;
  if (credential.warning !== undefined) context.warn(`client credential: ${credential.warning}`);
  else context.log(`client credential ${credential.secretName}: ${credential.daysLeft ?? '?'} days left`);
  if (report.alertsSent > 0)
    context.log(`alerts: ${report.alertsSent} health changes announced by the sweep`);
  if (migration !== undefined)
    context.log(
      `moved state out of Key Vault: ${migration.healthRecordsCopied} health records, ${migration.connectionsRecorded} connections recorded, ${migration.oldSecretsDeleted} old secrets deleted`,
    );
  context.log(
    `housekeeping: ${housekeeping.expiredStateRows} expired state rows, ${housekeeping.idempotencyKeysRemoved} idempotency keys, ${housekeeping.settledStatusesRemoved} settled statuses removed`,
  );
  for (const problem of housekeeping.problems) context.warn(`housekeeping: ${problem}`);
  return report;
}

registerTimer('tokenRefresh', tokenRefresh);
