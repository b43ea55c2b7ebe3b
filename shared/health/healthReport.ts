import type { StatusReport } from '../delegated/statusReport.ts';
import { problemStates } from './mailboxHealth.ts';

/**
 * GET /api/health, for uptime monitors: healthy when every configured mailbox can send and the app's
 * credential is valid, else the list of problems, each with what to do. Made from the same stored health as
 * /api/status (no token request, no Key Vault read beyond the cached credential), so polling it every
 * minute costs one query of the state table. A credential within 30 days of expiry is a warning, not yet a
 * problem: mail still flows, and the alert has said so.
 */
export interface HealthProblem {
  /** The mailbox, or `credential` for the app's client secret, certificate or federated credential. */
  subject: string;
  state: string;
  code: string;
  message?: string;
  remedy?: string;
  consentUrl?: string;
}

export interface HealthReport {
  healthy: boolean;
  checkedAt: string;
  problems: HealthProblem[];
  warnings: HealthProblem[];
}

export function createHealthReporter(options: { status: () => Promise<StatusReport> }): {
  report(): Promise<HealthReport>;
} {
  return {
    async report() {
      const status = await options.status();
      const problems: HealthProblem[] = status.mailboxes
        .filter((mailbox) => problemStates.has(mailbox.health))
        .map((mailbox) => ({
          subject: mailbox.address,
          state: mailbox.health,
          code: mailbox.lastError?.code ?? 'mailbox_not_connected',
          ...(mailbox.lastError === undefined ? {} : { message: mailbox.lastError.message }),
          ...(mailbox.remedy === undefined ? {} : { remedy: mailbox.remedy }),
          ...(mailbox.consentUrl === undefined ? {} : { consentUrl: mailbox.consentUrl }),
        }));
      const warnings: HealthProblem[] = [];
      const { credential } = status;
      const expired = credential.daysLeft !== undefined && credential.daysLeft < 0;
      if (credential.lastError !== undefined) {
        problems.push({
          subject: 'credential',
          state: 'failing',
          code: credential.lastError.code,
          message: credential.lastError.message,
          ...(credential.lastError.remedy === undefined ? {} : { remedy: credential.lastError.remedy }),
        });
      } else if (credential.unreadable !== undefined || expired) {
        problems.push({
          subject: 'credential',
          state: expired ? 'expired' : 'unreadable',
          code:
            credential.unreadable ??
            (credential.type === 'secret' ? 'client_secret_expired' : 'client_certificate_invalid'),
          ...(credential.warning === undefined ? {} : { message: credential.warning }),
        });
      } else if (credential.warning !== undefined) {
        warnings.push({
          subject: 'credential',
          state: 'expiring',
          code: 'credential_expiring',
          message: credential.warning,
        });
      }
      return { healthy: problems.length === 0, checkedAt: status.generatedAt, problems, warnings };
    },
  };
}
