import { readFileSync } from 'node:fs';
import { InvocationContext } from '@azure/functions';
import type { QueueClient } from '@azure/storage-queue';

/**
 * There is no Functions host here, so this driver plays its part for the queue trigger, reading the real
 * Azurite queue the way the host's queue listener does (Microsoft Learn, "Azure Queue storage trigger",
 * host.json settings): it receives up to `batchSize` messages at a time and fetches more when the number
 * still running falls to `newBatchThreshold`; it decodes each message (base64, then JSON when it parses),
 * invokes the registered handler with `triggerMetadata.dequeueCount`; on success it deletes the message; on
 * a throw it makes the message visible again after `visibilityTimeout`, and once `dequeueCount` reached
 * `maxDequeueCount` it moves it to `<queue>-poison` instead. Defaults come from the repository's host.json.
 */
export type QueueHandler = (queueItem: unknown, context: InvocationContext) => Promise<void>;

export interface HostQueueSettings {
  batchSize: number;
  newBatchThreshold: number;
  maxDequeueCount: number;
  visibilityTimeoutSeconds: number;
}

export interface QueueDriverOptions {
  queue: QueueClient;
  poisonQueue: QueueClient;
  handler: QueueHandler;
  settings?: Partial<HostQueueSettings>;
  /** How long to wait before polling an empty queue again (the host backs off up to maxPollingInterval). */
  pollIntervalMs?: number;
}

export interface QueueDriverStats {
  invocations: number;
  failures: number;
  poisoned: number;
  maxConcurrent: number;
}

export interface QueueDriver {
  readonly stats: QueueDriverStats;
  /** Runs the listener until `done()` holds (checked after each poll), or throws after `timeoutMs`. */
  runUntil(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void>;
}

function timeSpanSeconds(value: string): number {
  const [hours, minutes, seconds] = value.split(':').map(Number);
  return (hours ?? 0) * 3600 + (minutes ?? 0) * 60 + (seconds ?? 0);
}

export function hostQueueSettings(): HostQueueSettings {
  const host = JSON.parse(readFileSync(new URL('../../host.json', import.meta.url), 'utf8')) as {
    extensions?: {
      queues?: {
        batchSize?: number;
        newBatchThreshold?: number;
        maxDequeueCount?: number;
        visibilityTimeout?: string;
      };
    };
  };
  const queues = host.extensions?.queues ?? {};
  const batchSize = queues.batchSize ?? 16;
  return {
    batchSize,
    newBatchThreshold: queues.newBatchThreshold ?? Math.floor(batchSize / 2),
    maxDequeueCount: queues.maxDequeueCount ?? 5,
    visibilityTimeoutSeconds: timeSpanSeconds(queues.visibilityTimeout ?? '00:00:00'),
  };
}

function decode(messageText: string): unknown {
  const text = Buffer.from(messageText, 'base64').toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export function createQueueDriver(options: QueueDriverOptions): QueueDriver {
  const settings = { ...hostQueueSettings(), ...options.settings };
  const pollIntervalMs = options.pollIntervalMs ?? 50;
  const stats: QueueDriverStats = { invocations: 0, failures: 0, poisoned: 0, maxConcurrent: 0 };
  let running = 0;

  async function invoke(message: {
    messageId: string;
    popReceipt: string;
    messageText: string;
    dequeueCount: number;
    insertedOn: Date;
  }): Promise<void> {
    stats.invocations += 1;
    const context = new InvocationContext({
      invocationId: `queue-${stats.invocations}`,
      functionName: 'sendQueued',
      triggerMetadata: {
        id: message.messageId,
        dequeueCount: message.dequeueCount,
        popReceipt: message.popReceipt,
        insertionTime: message.insertedOn.toISOString(),
      },
      logHandler: () => undefined,
    });
    try {
      await options.handler(decode(message.messageText), context);
      await options.queue.deleteMessage(message.messageId, message.popReceipt);
    } catch {
      stats.failures += 1;
      if (message.dequeueCount >= settings.maxDequeueCount) {
        stats.poisoned += 1;
        await options.poisonQueue.sendMessage(message.messageText, { messageTimeToLive: -1 });
        await options.queue.deleteMessage(message.messageId, message.popReceipt);
      } else {
        await options.queue.updateMessage(
          message.messageId,
          message.popReceipt,
          undefined,
          settings.visibilityTimeoutSeconds,
        );
      }
    }
  }

  return {
    stats,
    async runUntil(done, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const inFlight = new Set<Promise<void>>();
      let failure: unknown;
      for (;;) {
        if (failure !== undefined) throw failure;
        if (inFlight.size === 0 && (await done())) return;
        if (Date.now() > deadline) {
          await Promise.allSettled(inFlight);
          throw new Error(
            `queue driver: condition not met within ${timeoutMs} ms (${JSON.stringify(stats)})`,
          );
        }
        if (running > settings.newBatchThreshold) {
          await Promise.race(inFlight);
          continue;
        }
        const { receivedMessageItems } = await options.queue.receiveMessages({
          numberOfMessages: settings.batchSize,
          // The host holds a message invisible while it runs (and renews that); ten minutes is its default.
          visibilityTimeout: 600,
        });
        if (receivedMessageItems.length === 0) {
          if (inFlight.size > 0) await Promise.race([...inFlight, sleep(pollIntervalMs)]);
          else await sleep(pollIntervalMs);
          continue;
        }
        for (const message of receivedMessageItems) {
          running += 1;
          stats.maxConcurrent = Math.max(stats.maxConcurrent, running);
          const task = invoke(message)
            .catch((error: unknown) => {
              failure = error;
            })
            .finally(() => {
              running -= 1;
              inFlight.delete(task);
            });
          inFlight.add(task);
        }
      }
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
