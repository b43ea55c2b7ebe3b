import { RelayError } from '../errors.ts';
import type { ScheduleStore } from './limitStores.ts';
import {
  earliestStart,
  headroomOf,
  parkedAfterQuotaRefusal,
  type ScheduleHeadroom,
  type SchedulePolicy,
  type SlotRequest,
  withReservation,
} from './sendSchedule.ts';

/**
 * Reserving a mailbox's next start in its shared schedule (shared/limits/sendSchedule.ts). A synchronous
 * send reserves only a start within its wait, else gets 429 with the honest Retry-After and reserves
 * nothing; a queued message always reserves, and the queue holds it invisible until its start.
 */
export interface MailboxLimits {
  readonly policy: SchedulePolicy;
  headroom(mailbox: string): Promise<ScheduleHeadroom>;
  /**
   * The start (ms) reserved for one send. With `maxWaitMs`, a start later than now + maxWaitMs is not
   * reserved and throws 429 `mailbox_rate_limited`; without it the start is reserved however late.
   */
  reserve(mailbox: string, request: SlotRequest, maxWaitMs?: number): Promise<number>;
  /** Exchange refused the mailbox with 554 5.2.0 SubmissionQuotaExceeded: nothing starts until it frees. */
  parkAfterQuotaRefusal(mailbox: string): Promise<void>;
}

export function createMailboxLimits(
  store: ScheduleStore,
  policy: SchedulePolicy,
  now: () => number = Date.now,
): MailboxLimits {
  return {
    policy,
    async headroom(mailbox) {
      return headroomOf(await store.read(mailbox), policy, now());
    },
    reserve(mailbox, request, maxWaitMs) {
      return store.update(mailbox, (state) => {
        const at = earliestStart(state, policy, request, now());
        if (maxWaitMs !== undefined && at > now() + maxWaitMs) {
          throw rateLimited(mailbox, at - now(), policy, state.parkedUntil > now());
        }
        return { state: withReservation(state, policy, at, request.recipients, now()), result: at };
      });
    },
    parkAfterQuotaRefusal(mailbox) {
      return store.update(mailbox, (state) => ({
        state: parkedAfterQuotaRefusal(state, now()),
        result: undefined,
      }));
    },
  };
}

function rateLimited(mailbox: string, waitMs: number, policy: SchedulePolicy, parked: boolean): RelayError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new RelayError('mailbox_rate_limited', {
    message: parked
      ? `${mailbox} is over Exchange Online's daily recipient quota (554 5.2.0 SubmissionQuotaExceeded); the relay sends nothing as it until the quota frees.`
      : `${mailbox} has no free send slot within the wait: at most ${policy.messagesPerMinute} messages a minute and ${policy.recipientsPerDay} recipients a day, counted over every instance of the relay.`,
    remedy: `Retry after ${seconds} seconds, send with "Prefer: respond-async" to let the relay queue it for its slot, or spread mail over several sender mailboxes.`,
    details: {
      mailbox,
      messagesPerMinute: policy.messagesPerMinute,
      recipientsPerDay: policy.recipientsPerDay,
    },
    retryAfterSeconds: seconds,
  });
}
