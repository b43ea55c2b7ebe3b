import { TableClient } from '@azure/data-tables';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { type QueueClient, QueueServiceClient } from '@azure/storage-queue';

/**
 * The relay's durable parts, all in one Azure Storage account (Azurite locally and in tests): the send
 * queue and its poison queue, a blob container for message bodies too large for a queue message, and two
 * tables (send status, idempotency keys). Names are fixed because the queue trigger's registration and
 * host.json name them too; `<queue>-poison` is the Functions host's own naming for poison messages.
 */
export const sendQueueName = 'relay-send';
export const poisonQueueName = `${sendQueueName}-poison`;
export const bodyContainerName = 'relay-send-bodies';
export const statusTableName = 'RelaySendStatus';
export const idempotencyTableName = 'RelayIdempotency';

export interface RelayStorage {
  sendQueue: QueueClient;
  poisonQueue: QueueClient;
  bodies: ContainerClient;
  statuses: TableClient;
  idempotencyKeys: TableClient;
  /** Creates the queues, container and tables once per process; later calls share the first. */
  ready(): Promise<void>;
}

export function createRelayStorage(connectionString: string): RelayStorage {
  // Azurite and other local endpoints speak plain http; the Tables client refuses that unless told.
  const insecure = /UseDevelopmentStorage=true|Endpoint=http:/i.test(connectionString);
  const queues = QueueServiceClient.fromConnectionString(connectionString);
  const blobs = BlobServiceClient.fromConnectionString(connectionString);
  const table = (name: string) =>
    TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: insecure });
  const storage = {
    sendQueue: queues.getQueueClient(sendQueueName),
    poisonQueue: queues.getQueueClient(poisonQueueName),
    bodies: blobs.getContainerClient(bodyContainerName),
    statuses: table(statusTableName),
    idempotencyKeys: table(idempotencyTableName),
  };
  let created: Promise<void> | undefined;

  async function createAll(): Promise<void> {
    await Promise.all([
      storage.sendQueue.createIfNotExists(),
      storage.poisonQueue.createIfNotExists(),
      storage.bodies.createIfNotExists(),
      storage.statuses.createTable(),
      storage.idempotencyKeys.createTable(),
    ]);
  }

  return {
    ...storage,
    ready() {
      created ??= createAll();
      // A storage outage at start-up must not be remembered: the next request tries again.
      created.catch(() => {
        created = undefined;
      });
      return created;
    },
  };
}
