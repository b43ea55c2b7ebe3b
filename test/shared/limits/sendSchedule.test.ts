import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  earliestStart,
  emptySchedule,
  LATE_START_MS,
  parkedAfterQuotaRefusal,
  parseSchedule,
  type SchedulePolicy,
  type ScheduleState,
  serializeSchedule,
  withReservation,
} from '../../../shared/limits/sendSchedule.ts';

/**
 * The schedule every instance reserves in (shared/limits/sendSchedule.ts), driven as the relay drives it:
 * requests arrive at increasing times, each reserves its earliest start, and a send may begin up to
 * LATE_START_MS after its start. What Exchange would see is checked on the resulting start times.
 */
const minute = 60_000;
const day = 24 * 60 * minute;

interface Arrival {
  gapMs: number;
  recipients: number;
  spaced: boolean;
  lateMs: number;
}

function replay(policy: SchedulePolicy, arrivals: Arrival[]) {
  let state: ScheduleState = emptySchedule();
  let now = 1_700_000_000_000;
  const sends: Array<{ at: number; began: number; recipients: number; arrived: number }> = [];
  for (const arrival of arrivals) {
    now += arrival.gapMs;
    const at = earliestStart(state, policy, arrival, now);
    state = withReservation(state, policy, at, arrival.recipients, now);
    // The stored form is what the next instance reads.
    state = parseSchedule(serializeSchedule(state));
    sends.push({ at, began: at + arrival.lateMs, recipients: arrival.recipients, arrived: now });
  }
  return { sends, state };
}

const arrival = fc.record({
  gapMs: fc.oneof(
    fc.constant(0),
    fc.integer({ min: 0, max: 5_000 }),
    fc.integer({ min: 0, max: 4 * 3_600_000 }),
  ),
  recipients: fc.integer({ min: 1, max: 500 }),
  spaced: fc.boolean(),
  lateMs: fc.integer({ min: 0, max: LATE_START_MS }),
});

describe('send schedule', () => {
  it('never lets a 60-second window hold more starts than the rate, even with late starts', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(arrival, { maxLength: 150 }),
        (rate, arrivals) => {
          const { sends } = replay({ messagesPerMinute: rate, recipientsPerDay: 1_000_000 }, arrivals);
          const began = sends.map((send) => send.began).sort((a, b) => a - b);
          for (let first = 0; first + rate < began.length; first += 1)
            expect((began[first + rate] ?? 0) - (began[first] ?? 0)).toBeGreaterThanOrEqual(minute);
        },
      ),
    );
  });

  it('never charges more recipients to a rolling day than the budget', () => {
    fc.assert(
      fc.property(fc.array(arrival, { maxLength: 120 }), (arrivals) => {
        const budget = 2_000;
        const { sends } = replay({ messagesPerMinute: 30, recipientsPerDay: budget }, arrivals);
        for (const send of sends) {
          const inDay = sends
            .filter((other) => other.at <= send.at && other.at > send.at - day)
            .reduce((sum, other) => sum + other.recipients, 0);
          expect(inDay).toBeLessThanOrEqual(budget);
        }
      }),
    );
  });

  it('is first come, first served, and never starts a message before it arrived', () => {
    fc.assert(
      fc.property(fc.array(arrival, { maxLength: 100 }), (arrivals) => {
        const { sends } = replay({ messagesPerMinute: 7, recipientsPerDay: 5_000 }, arrivals);
        for (const [index, send] of sends.entries()) {
          expect(send.at).toBeGreaterThanOrEqual(send.arrived);
          if (index > 0) expect(send.at).toBeGreaterThanOrEqual(sends[index - 1]?.at ?? 0);
        }
      }),
    );
  });

  it('spaces a queued backlog evenly: slot k at k × 60 s / rate', () => {
    const backlog = Array.from({ length: 5 }, () => ({ gapMs: 0, recipients: 1, spaced: true, lateMs: 0 }));
    const { sends } = replay({ messagesPerMinute: 30, recipientsPerDay: 10_000 }, backlog);
    const first = sends[0]?.at ?? 0;
    expect(sends.map((send) => send.at - first)).toEqual([0, 2_000, 4_000, 6_000, 8_000]);
  });

  it('lets synchronous sends use a free minute at once, then waits a minute plus the margin', () => {
    const burst = Array.from({ length: 4 }, () => ({ gapMs: 0, recipients: 1, spaced: false, lateMs: 0 }));
    const { sends } = replay({ messagesPerMinute: 3, recipientsPerDay: 10_000 }, burst);
    const first = sends[0]?.at ?? 0;
    expect(sends.map((send) => send.at - first)).toEqual([0, 0, 0, minute + 3_000]);
  });

  it('keeps the stored row small however long the history', () => {
    const steady = Array.from({ length: 5_000 }, () => ({
      gapMs: 2_000,
      recipients: 3,
      spaced: true,
      lateMs: 0,
    }));
    const { state } = replay({ messagesPerMinute: 30, recipientsPerDay: 1_000_000 }, steady);
    const stored = serializeSchedule(state);
    expect(state.starts).toHaveLength(30);
    // 5-minute buckets over a day: at most 290 of them, far under a Table property's 64 KiB.
    expect(state.recipients.length).toBeLessThanOrEqual(290);
    expect(stored.starts.length + stored.recipients.length).toBeLessThan(8_000);
  });

  it('parks a mailbox Exchange reported over quota until its oldest recipients leave the day', () => {
    const now = 1_700_000_000_000;
    const policy = { messagesPerMinute: 30, recipientsPerDay: 10_000 };
    const charged = withReservation(emptySchedule(), policy, now, 400, now);
    const parked = parkedAfterQuotaRefusal(charged, now + minute);
    const next = earliestStart(parked, policy, { recipients: 1, spaced: false }, now + minute);
    expect(next).toBeGreaterThan(now + day);
    expect(next).toBeLessThanOrEqual(now + day + 5 * minute);
    // Nothing charged here: Exchange's own hint of about an hour.
    const unknown = parkedAfterQuotaRefusal(emptySchedule(), now);
    expect(earliestStart(unknown, policy, { recipients: 1, spaced: false }, now)).toBe(now + 60 * minute);
  });
});
