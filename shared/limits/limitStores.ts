import { emptySchedule, type ScheduleState } from './sendSchedule.ts';

/**
 * Where the per-mailbox limits live. Exchange counts per signed-in mailbox, across every client, so the
 * relay's instances must share them: in Azure the storage account (shared/limits/storageLimitStores.ts);
 * with RELAY_STATE_STORE=memory, this process only, for a relay that is known to run as one process.
 * Both stores have the same semantics, so the relay's code above them is the same.
 */
export interface ScheduleStore {
  /**
   * Applies `change` to the mailbox's schedule atomically: when another instance changed it in between,
   * reads it again and applies `change` again. `change` returns the new state to write (or undefined to
   * write nothing) and a result.
   */
  update<R>(mailbox: string, change: (state: ScheduleState) => ScheduleChange<R>): Promise<R>;
  read(mailbox: string): Promise<ScheduleState>;
  /** Storage operations made so far (for the benchmark); always 0 in memory. */
  readonly operations: number;
}

export interface ScheduleChange<R> {
  state?: ScheduleState | undefined;
  result: R;
}

/**
 * The mailbox's SMTP session slots: Exchange Online allows 3 concurrent SMTP AUTH sessions per mailbox
 * (432 4.3.2 at a 4th). A slot is held while a connection is open and must be renewed; one whose holder
 * died frees itself after SESSION_LEASE_SECONDS.
 */
export interface SessionSlotStore {
  /** Takes one of the mailbox's `slots` that nobody holds, or undefined when all are held. */
  tryTake(mailbox: string, slots: number): Promise<HeldSlot | undefined>;
  readonly operations: number;
}

export interface HeldSlot {
  readonly slot: number;
  /** Extends the hold; false when it was lost (expired and taken by another holder). */
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

/** Blob leases last 15 to 60 seconds; the shortest frees a dead instance's slot soonest. */
export const SESSION_LEASE_SECONDS = 15;
/** Renewed well before expiry, so one failed renewal does not lose the slot. */
export const SESSION_RENEW_MS = 5_000;

const keyOf = (mailbox: string) => mailbox.toLowerCase();

export function createMemoryScheduleStore(): ScheduleStore {
  const states = new Map<string, ScheduleState>();
  return {
    // Memory is not storage.
    operations: 0,
    async read(mailbox) {
      return states.get(keyOf(mailbox)) ?? emptySchedule();
    },
    async update(mailbox, change) {
      const { state, result } = change(states.get(keyOf(mailbox)) ?? emptySchedule());
      if (state !== undefined) states.set(keyOf(mailbox), state);
      return result;
    },
  };
}

export function createMemorySessionSlots(now: () => number = Date.now): SessionSlotStore {
  // Per mailbox: slot number -> when its hold expires unless renewed.
  const held = new Map<string, Map<number, number>>();
  return {
    // Memory is not storage.
    operations: 0,
    async tryTake(mailbox, slots) {
      const key = keyOf(mailbox);
      const holds = held.get(key) ?? new Map<number, number>();
      held.set(key, holds);
      for (let slot = 0; slot < slots; slot += 1) {
        const expiry = holds.get(slot);
        if (expiry !== undefined && expiry > now()) continue;
        let token = now() + SESSION_LEASE_SECONDS * 1000;
        holds.set(slot, token);
        return {
          slot,
          async renew() {
            if (holds.get(slot) !== token) return false;
            token = now() + SESSION_LEASE_SECONDS * 1000;
            holds.set(slot, token);
            return true;
          },
          async release() {
            if (holds.get(slot) === token) holds.delete(slot);
            if (holds.size === 0) held.delete(key);
          },
        };
      }
      return undefined;
    },
  };
}
