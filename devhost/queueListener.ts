import functions, { type StorageQueueHandler } from '@azure/functions';
import type { QueueClient } from '@azure/storage-queue';
import { type HostQueueSettings, hostSettings } from '../shared/api/hostJson.ts';

/**
 * The development host's queue trigger: reads a real queue (Azurite locally) the way the Functions host's
 * queue listener does (Microsoft Learn, "Azure Queue storage trigger", host.json settings). It receives up
 * to `batchSize` messages at a time and fetches more when the number still running falls to
 * `newBatchThreshold`; decodes each message (base64 unless `messageEncoding` is none, then JSON when it
 * parses) and invokes the handler with `triggerMetadata.dequeueCount`; on success deletes the message; on
 * a throw makes it visible again after `visibilityTimeout`, or, once `dequeueCount` reached
 * `maxDequeueCount`, moves it to `<queue>-poison`. An empty queue is polled again after a delay that
 * doubles up to `maxPollingInterval`.
 */
export interface QueueListenerOptions {
  functionName: string;
  queue: QueueClient;
  poisonQueue: QueueClient;
  handler: StorageQueueHandler;
  /** host.json's extensions.queues, with any of them overridden. */
  settings?: Partial<HostQueueSettings>;
  log?: (line: string) => void;
}

export interface QueueListenerStats {
  invocations: number;
  failures: number;
  poisoned: number;
  maxConcurrent: number;
}

export interface QueueListener {
  readonly stats: QueueListenerStats;
  /** Listens until `done()` holds while nothing runs (checked before each poll), or throws after `timeoutMs`. */
  runUntil(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void>;
}

// The host starts polling an empty queue again quickly and backs off from there.
const FIRST_POLL_DELAY_MS = 100;

function decode(messageText: string, encoding: HostQueueSettings['messageEncoding']): unknown {
  const text = encoding === 'base64' ? Buffer.from(messageText, 'base64').toString('utf8') : messageText;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

interface ReceivedMessage {
  messageId: string;
  popReceipt: string;
  messageText: string;
  dequeueCount: number;
  insertedOn: Date;
}

export function createQueueListener(options: QueueListenerOptions): QueueListener {
  const settings = { ...hostSettings().queues, ...options.settings };
  const stats: QueueListenerStats = { invocations: 0, failures: 0, poisoned: 0, maxConcurrent: 0 };
  const maxPollDelayMs = settings.maxPollingIntervalSeconds * 1000;
  const firstPollDelayMs = Math.min(FIRST_POLL_DELAY_MS, maxPollDelayMs);
  let running = 0;

  async function invoke(message: ReceivedMessage): Promise<void> {
    stats.invocations += 1;
    // @azure/functions is CommonJS, and Node's named-export detection misses its classes.
    const context = new functions.InvocationContext({
      invocationId: `${options.functionName}-${stats.invocations}`,
      functionName: options.functionName,
      triggerMetadata: {
        id: message.messageId,
        dequeueCount: message.dequeueCount,
        popReceipt: message.popReceipt,
        insertionTime: message.insertedOn.toISOString(),
      },
      logHandler: (level, ...args) => options.log?.(`${level}: ${args.map(String).join(' ')}`),
    });
    try {
      await options.handler(decode(message.messageText, settings.messageEncoding), context);
      await options.queue.deleteMessage(message.messageId, message.popReceipt);
    } catch (error) {
      stats.failures += 1;
      options.log?.(
        `error: ${options.functionName} failed: ${error instanceof Error ? error.name : 'error'}`,
      );
      if (message.dequeueCount >= settings.maxDequeueCount) {
        stats.poisoned += 1;
        await options.poisonQueue.createIfNotExists();
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

  let unreachableLogged = false;
  /** A queue that does not exist yet or storage that is not up (Azurite still starting) polls as empty. */
  async function receive(): Promise<ReceivedMessage[]> {
    try {
      const { receivedMessageItems } = await options.queue.receiveMessages({
        numberOfMessages: settings.batchSize,
        // The host holds a message invisible while it runs (and renews that); ten minutes is its default.
        visibilityTimeout: 600,
      });
      unreachableLogged = false;
      return receivedMessageItems;
    } catch (error) {
      // No queue yet: the relay creates it with the first queued message.
      if ((error as { statusCode?: number }).statusCode === 404) return [];
      if (!unreachableLogged) {
        options.log?.(
          `warning: ${options.functionName}: cannot read queue ${options.queue.name} yet (${error instanceof Error ? error.message.split('\n')[0] : 'error'}); retrying`,
        );
        unreachableLogged = true;
      }
      return [];
    }
  }

  return {
    stats,
    async runUntil(done, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const inFlight = new Set<Promise<void>>();
      let failure: unknown;
      let pollDelayMs = firstPollDelayMs;
      for (;;) {
        if (failure !== undefined) throw failure;
        if (inFlight.size === 0 && (await done())) return;
        if (Date.now() > deadline) {
          await Promise.allSettled(inFlight);
          throw new Error(
            `queue listener: condition not met within ${timeoutMs} ms (${JSON.stringify(stats)})`,
          );
        }
        if (running > settings.newBatchThreshold) {
          await Promise.race(inFlight);
          continue;
        }
        const receivedMessageItems = await receive();
        if (receivedMessageItems.length === 0) {
          await Promise.race([...inFlight, sleep(pollDelayMs)]);
          pollDelayMs = Math.min(pollDelayMs * 2, maxPollDelayMs);
          continue;
        }
        pollDelayMs = firstPollDelayMs;
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
