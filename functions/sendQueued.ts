import type { InvocationContext } from '@azure/functions';
import { hostSettings } from '../shared/api/hostJson.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerQueue } from './register.ts';

/**
 * Queue trigger on `relay-send`: sends one queued message (see shared/durable/queuedSendProcessor.ts).
 * A throw makes the host retry the queue message and, after host.json's maxDequeueCount, move it to
 * `relay-send-poison`; the processor only throws when the relay's own storage failed.
 */
export async function sendQueued(
  queueItem: unknown,
  runtime: Runtime,
  context: InvocationContext,
): Promise<void> {
  const dequeueCount = Number(context.triggerMetadata?.dequeueCount ?? 1);
  const outcome = await runtime.queuedSends.process(queueItem, {
    dequeueCount,
    maxDequeueCount: hostSettings().queues.maxDequeueCount,
  });
  context.log(`queued send ${outcome} (delivery ${dequeueCount})`);
}

registerQueue('sendQueued', sendQueued);
