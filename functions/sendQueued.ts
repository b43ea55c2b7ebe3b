import { app, type InvocationContext } from '@azure/functions';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { sendQueueName } from '../shared/storage/relayStorage.ts';

/**
 * Queue trigger on `relay-send`: sends one queued message (see shared/durable/queuedSendProcessor.ts).
 * A throw makes the host retry the queue message and, after host.json's maxDequeueCount, move it to
 * `relay-send-poison`; the processor only throws when the relay's own storage failed.
 */
/** host.json extensions.queues.maxDequeueCount; test/functions/registrations checks they agree. */
export const HOST_MAX_DEQUEUE_COUNT = 5;

export function createSendQueuedHandler(runtime: () => Promise<Runtime>) {
  return async (queueItem: unknown, context: InvocationContext): Promise<void> => {
    const { queuedSends } = await runtime();
    const dequeueCount = Number(context.triggerMetadata?.dequeueCount ?? 1);
    const outcome = await queuedSends.process(queueItem, {
      dequeueCount,
      maxDequeueCount: HOST_MAX_DEQUEUE_COUNT,
    });
    context.log(`queued send ${outcome} (delivery ${dequeueCount})`);
  };
}

export const sendQueued = createSendQueuedHandler(runtimeFromEnvironment);

app.storageQueue('sendQueued', {
  queueName: sendQueueName,
  // The name of the app setting holding the storage connection string, which the relay reads too.
  connection: 'RELAY_STORAGE_CONNECTION',
  handler: sendQueued,
});
