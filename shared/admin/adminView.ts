import { routePath } from '../api/routes.ts';
import type { RelayConfig } from '../config.ts';
import type { StatusReport } from '../delegated/statusReport.ts';
import type { QueueOverview } from '../durable/queueAdmin.ts';
import { ensureRelayError } from '../errors.ts';
import type { AdminMailbox, AdminPageView } from './adminPage.ts';

/**
 * What the admin page shows, from the same stored health /api/status reports and the queue's overview.
 * Action URLs are paths of this app made from the route table; the page's script adds the admin key.
 */
export async function buildAdminView(options: {
  status: () => Promise<StatusReport>;
  queue: () => Promise<QueueOverview>;
  alerts: RelayConfig['alerts'];
}): Promise<AdminPageView> {
  const [status, queue] = await Promise.all([
    options.status(),
    options.queue().then(
      (overview) => ({ overview }),
      (error: unknown) => ({ problem: ensureRelayError(error).message }),
    ),
  ]);
  const { credential } = status;
  return {
    generatedAt: status.generatedAt,
    mailboxes: status.mailboxes.map(
      (mailbox): AdminMailbox => ({
        address: mailbox.address,
        mode: mailbox.mode,
        health: mailbox.health,
        ...(mailbox.connectedAt === undefined ? {} : { connectedAt: mailbox.connectedAt }),
        ...(mailbox.disconnectedAt === undefined ? {} : { disconnectedAt: mailbox.disconnectedAt }),
        ...(mailbox.lastRefreshAt === undefined ? {} : { lastRefreshAt: mailbox.lastRefreshAt }),
        ...(mailbox.lastSuccessAt === undefined ? {} : { lastSuccessAt: mailbox.lastSuccessAt }),
        ...(mailbox.lastError === undefined ? {} : { lastError: mailbox.lastError }),
        ...(mailbox.remedy === undefined ? {} : { remedy: mailbox.remedy }),
        ...(mailbox.mode === 'delegated'
          ? { connectUrl: `${routePath('oauthStart')}?mailbox=${encodeURIComponent(mailbox.address)}` }
          : {}),
        ...(mailbox.mode === 'delegated' &&
        mailbox.health !== 'not_connected' &&
        mailbox.health !== 'disconnected'
          ? { disconnectUrl: routePath('disconnectMailbox', { address: mailbox.address }) }
          : {}),
        testUrl: routePath('checkMailbox', { address: mailbox.address }),
      }),
    ),
    credential: {
      type: credential.type,
      ...(credential.secretName === undefined ? {} : { secretName: credential.secretName }),
      ...(credential.expiresOn === undefined ? {} : { expiresOn: credential.expiresOn }),
      ...(credential.daysLeft === undefined ? {} : { daysLeft: credential.daysLeft }),
      ...(credential.lastError !== undefined
        ? {
            warning: `${credential.lastError.message}${credential.lastError.remedy ? ` ${credential.lastError.remedy}` : ''}`,
          }
        : credential.warning === undefined
          ? {}
          : { warning: credential.warning }),
    },
    ...('overview' in queue
      ? {
          queue: {
            queued: queue.overview.queued,
            failed: queue.overview.failed,
            poisonCount: queue.overview.poisonCount,
            poisoned: queue.overview.poisoned.map((message) => ({
              id: message.id,
              callerName: message.callerName,
              ...(message.sender === undefined ? {} : { sender: message.sender }),
              ...(message.reason === undefined ? {} : { reason: message.reason }),
              ...(message.poisonedAt === undefined ? {} : { poisonedAt: message.poisonedAt }),
              ...(message.retryable ? { retryUrl: routePath('retryPoisoned', { id: message.id }) } : {}),
            })),
          },
        }
      : { queueProblem: queue.problem }),
    alerts: {
      ...(options.alerts.webhookUrl === undefined
        ? {}
        : { webhookHost: new URL(options.alerts.webhookUrl).host }),
      ...(options.alerts.email === undefined ? {} : { email: options.alerts.email }),
    },
  };
}
