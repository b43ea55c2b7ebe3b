/**
 * A mailbox's send schedule: when its next message may start. Exchange Online counts per signed-in mailbox:
 * about 30 messages a minute (the excess delayed, 4.3.2 when pushed on) and 10,000 recipients a rolling
 * day (then 554 5.2.0 SubmissionQuotaExceeded for up to 24 hours). Every instance of the relay reserves its
 * sends in one shared schedule per mailbox (shared/limits/storageLimitStores.ts), so these rules hold however
 * many instances run. This file is the arithmetic only: pure functions of a state and the clock.
 *
 * - The schedule is first come, first served: a reservation never starts before an earlier one, so a
 *   synchronous send does not overtake a queued backlog that already holds the next slots.
 * - Sliding window: any `messagesPerMinute + 1` consecutive starts span more than a minute plus
 *   START_MARGIN_MS. The margin absorbs a start up to LATE_START_MS behind its slot (a queue message is
 *   visible only to the second and the host polls an idle queue every few seconds) and the time from start
 *   to Exchange's acceptance, so no 60 seconds at the server ever hold more than the rate.
 * - Queued messages are spaced evenly (60 s / rate apart), so a backlog drains at the rate without bursts
 *   that would wait for the mailbox's 3 SMTP sessions; a synchronous send may use a free burst at once.
 * - Recipients are charged to 5-minute buckets that count for 24 hours after the bucket ends, which is
 *   never later than Exchange's own rolling day.
 * - A mailbox Exchange reported over its daily quota is parked: nothing starts before `parkedUntil`.
 */
export interface SchedulePolicy {
  messagesPerMinute: number;
  recipientsPerDay: number;
}

export interface ScheduleState {
  /** Start times (ms) of the latest reservations, oldest first; only the last `messagesPerMinute` matter. */
  starts: number[];
  /** Recipients charged per bucket, `[bucket start ms, recipients]`, oldest first. */
  recipients: Array<[number, number]>;
  /** Nothing starts before this (ms); 0 when the mailbox is not parked. */
  parkedUntil: number;
}

export const emptySchedule = (): ScheduleState => ({ starts: [], recipients: [], parkedUntil: 0 });

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * 60_000;
export const RECIPIENT_BUCKET_MS = 5 * 60_000;
/** How far behind its slot a send may still start on that slot; a later one reserves again. */
export const LATE_START_MS = 2_000;
/** Added to the minute between a start and the one `messagesPerMinute` later (see above). */
export const START_MARGIN_MS = LATE_START_MS + 1_000;

export interface SlotRequest {
  recipients: number;
  /** Queued mail is spaced evenly; synchronous sends may take a free burst. */
  spaced: boolean;
}

/** When a bucket stops counting against the rolling day. */
const bucketExpiry = (bucketStart: number) => bucketStart + RECIPIENT_BUCKET_MS + DAY_MS;

/** The earliest time a send with `request` may start, given everything reserved so far. */
export function earliestStart(
  state: ScheduleState,
  policy: SchedulePolicy,
  request: SlotRequest,
  now: number,
): number {
  const { starts } = state;
  const rate = policy.messagesPerMinute;
  let at = Math.max(now, state.parkedUntil, starts[starts.length - 1] ?? 0);
  if (starts.length >= rate)
    at = Math.max(at, (starts[starts.length - rate] ?? 0) + MINUTE_MS + START_MARGIN_MS);
  if (request.spaced && starts.length > 0) {
    at = Math.max(at, (starts[starts.length - 1] ?? 0) + Math.ceil(MINUTE_MS / rate));
  }
  return recipientBudgetAllows(state, policy, request.recipients, at);
}

/** The first time at or after `at` when `recipients` more fit the rolling day's budget. */
function recipientBudgetAllows(
  state: ScheduleState,
  policy: SchedulePolicy,
  recipients: number,
  at: number,
): number {
  // A message larger than the whole budget (only with a small budget) needs an empty day.
  const needed = Math.min(recipients, policy.recipientsPerDay);
  let counted = 0;
  for (const [bucket, count] of state.recipients) if (bucketExpiry(bucket) > at) counted += count;
  let start = at;
  for (const [bucket, count] of state.recipients) {
    if (counted + needed <= policy.recipientsPerDay) break;
    if (bucketExpiry(bucket) <= start) continue;
    start = bucketExpiry(bucket);
    counted -= count;
  }
  return start;
}

/** The state after reserving a start at `at` for `recipients`, with what no longer counts dropped. */
export function withReservation(
  state: ScheduleState,
  policy: SchedulePolicy,
  at: number,
  recipients: number,
  now: number,
): ScheduleState {
  const starts = [...state.starts, at].slice(-policy.messagesPerMinute);
  const bucket = at - (at % RECIPIENT_BUCKET_MS);
  const charged = state.recipients.filter(([start]) => bucketExpiry(start) > now);
  const same = charged.findIndex(([start]) => start === bucket);
  if (same === -1) charged.push([bucket, recipients]);
  else charged[same] = [bucket, (charged[same]?.[1] ?? 0) + recipients];
  charged.sort((a, b) => a[0] - b[0]);
  return { starts, recipients: charged, parkedUntil: state.parkedUntil > now ? state.parkedUntil : 0 };
}

/** Exchange said the mailbox is over its daily quota: park it until the oldest charged recipients expire. */
export function parkedAfterQuotaRefusal(state: ScheduleState, now: number): ScheduleState {
  const oldest = state.recipients.find(([start]) => bucketExpiry(start) > now);
  // Nothing charged here means other senders used the mailbox's quota: Exchange's hint is about an hour.
  const until = oldest === undefined ? now + 60 * MINUTE_MS : bucketExpiry(oldest[0]);
  return { ...state, parkedUntil: Math.max(state.parkedUntil, until) };
}

export interface ScheduleHeadroom {
  /** Milliseconds until a send could start (0: now). */
  waitMs: number;
  /** Starts left in the current minute. */
  freeSlots: number;
}

export function headroomOf(state: ScheduleState, policy: SchedulePolicy, now: number): ScheduleHeadroom {
  const recent = state.starts.filter((start) => start > now - MINUTE_MS - START_MARGIN_MS).length;
  return {
    waitMs: earliestStart(state, policy, { recipients: 1, spaced: false }, now) - now,
    freeSlots: Math.max(0, policy.messagesPerMinute - recent),
  };
}

/** Compact text for one Table storage property each (base-36 milliseconds). */
export function serializeSchedule(state: ScheduleState): {
  starts: string;
  recipients: string;
  parkedUntil: string;
} {
  return {
    starts: state.starts.map((start) => start.toString(36)).join(','),
    recipients: state.recipients.map(([start, count]) => `${start.toString(36)}:${count}`).join(','),
    parkedUntil: state.parkedUntil.toString(36),
  };
}

export function parseSchedule(stored: {
  starts?: unknown;
  recipients?: unknown;
  parkedUntil?: unknown;
}): ScheduleState {
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  const starts = text(stored.starts)
    .split(',')
    .filter(Boolean)
    .map((start) => Number.parseInt(start, 36));
  const recipients = text(stored.recipients)
    .split(',')
    .filter(Boolean)
    .map((pair): [number, number] => {
      const [start = '0', count = '0'] = pair.split(':');
      return [Number.parseInt(start, 36), Number(count)];
    });
  const parkedUntil = Number.parseInt(text(stored.parkedUntil) || '0', 36);
  return { starts, recipients, parkedUntil: Number.isFinite(parkedUntil) ? parkedUntil : 0 };
}
