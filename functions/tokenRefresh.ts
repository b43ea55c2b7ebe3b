import type { InvocationContext, Timer } from '@azure/functions';
import type { RefreshReport } from '../shared/delegated/tokenMaintenance.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerTimer } from './register.ts';

/**
 * Timer tokenRefresh (RELAY_TOKEN_REFRESH_SCHEDULE, every 6 hours by default): keeps every delegated
 * mailbox's refresh token alive and rotated, records per-mailbox health, and warns before the app's
 * credential expires. A failing mailbox is logged as a warning; the others are refreshed regardless.
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
  const { credential } = report;
  if (credential.warning !== undefined) context.warn(`client credential: ${credential.warning}`);
  else context.log(`client credential ${credential.secretName}: ${credential.daysLeft ?? '?'} days left`);
  return report;
}

registerTimer('tokenRefresh', tokenRefresh);
