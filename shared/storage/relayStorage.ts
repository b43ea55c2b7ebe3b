import { createRequire } from 'node:module';
import type { TableClient } from '@azure/data-tables';
import type { TokenCredential } from '@azure/identity';
import type { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import type { RelayConfig } from '../config.ts';
import { managedIdentityCredential } from '../tokens/managedIdentityAssertion.ts';

/**
 * The relay's durable parts, all in one Azure Storage account (Azurite locally and in tests): the send
 * queue and its poison queue, a blob container for message bodies too large for a queue message, four
 * tables (send status, idempotency keys, per-mailbox send schedules, the relay's state) and a container
 * of blob leases (the per-mailbox SMTP session slots). Names are fixed because the queue trigger's registration and
 * host.json name them too; `<queue>-poison` is the Functions host's own naming for poison messages.
 */
export const sendQueueName = 'relay-send';
/** The Functions host's name for a queue's poison queue. */
export const poisonQueueOf = (queueName: string) => `${queueName}-poison`;
export const poisonQueueName = poisonQueueOf(sendQueueName);
export const bodyContainerName = 'relay-send-bodies';
export const statusTableName = 'RelaySendStatus';
export const idempotencyTableName = 'RelayIdempotency';
/** Per-mailbox send schedules (shared/limits/storageLimitStores.ts). */
export const limitsTableName = 'RelayMailboxLimits';
/** Pending sign-ins, mailbox health, announced alerts, migrations (shared/state/stateTable.ts). */
export const stateTableName = 'RelayState';
/** Per-mailbox SMTP session slots, as blob leases. */
export const sessionSlotsContainerName = 'relay-session-slots';

export interface RelayStorage {
  sendQueue: QueueClient;
  poisonQueue: QueueClient;
  bodies: ContainerClient;
  statuses: TableClient;
  idempotencyKeys: TableClient;
  /**
   * The per-mailbox limits, with short retries: a send waits a bounded time for them, and when storage is
   * down it is refused (503), never sent unlimited.
   */
  mailboxLimits: TableClient;
  sessionSlots: ContainerClient;
  relayState: TableClient;
  /** Any queue of the account, by name (the development host's queue trigger reads through it). */
  queue(name: string): QueueClient;
  /** Creates the queues, container and tables once per process; later calls share the first. */
  ready(): Promise<void>;
}

export function createRelayStorage(
  settings: RelayConfig['storage'],
  identityCredential: () => Promise<TokenCredential> = () =>
    managedIdentityCredential(settings.identityClientId),
): RelayStorage {
  const { queues, blobs, table, limitsTable, limitsBlobs } =
    settings.accountName === undefined
      ? clientsFromConnectionString(settings.connectionString)
      : clientsFromIdentity(settings.accountName, lazyCredential(identityCredential));
  const storage = {
    sendQueue: queues.getQueueClient(sendQueueName),
    poisonQueue: queues.getQueueClient(poisonQueueName),
    bodies: blobs.getContainerClient(bodyContainerName),
    statuses: table(statusTableName),
    idempotencyKeys: table(idempotencyTableName),
    mailboxLimits: limitsTable(limitsTableName),
    sessionSlots: limitsBlobs.getContainerClient(sessionSlotsContainerName),
    relayState: table(stateTableName),
  };
  let created: Promise<void> | undefined;

  async function createAll(): Promise<void> {
    await Promise.all([
      storage.sendQueue.createIfNotExists(),
      storage.poisonQueue.createIfNotExists(),
      storage.bodies.createIfNotExists(),
      storage.statuses.createTable(),
      storage.idempotencyKeys.createTable(),
      storage.mailboxLimits.createTable(),
      storage.sessionSlots.createIfNotExists(),
      storage.relayState.createTable(),
    ]);
  }

  return {
    ...storage,
    queue: (name) => queues.getQueueClient(name),
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

// The storage SDKs are loaded when the relay first builds its storage clients (runtime.ts does that on the
// first queued send or idempotency key), from their CommonJS builds, synchronously: a cold start that serves
// plain sends does not pay for three SDKs.
const requireFromHere = createRequire(import.meta.url);
const storageSdks = () => ({
  ...(requireFromHere('@azure/data-tables') as typeof import('@azure/data-tables')),
  ...(requireFromHere('@azure/storage-blob') as typeof import('@azure/storage-blob')),
  ...(requireFromHere('@azure/storage-queue') as typeof import('@azure/storage-queue')),
});

interface StorageClients {
  queues: QueueServiceClient;
  blobs: BlobServiceClient;
  table(name: string): TableClient;
  limitsTable(name: string): TableClient;
  limitsBlobs: BlobServiceClient;
}

// The SDKs' defaults retry for up to about a minute; a send waiting for its limits must not.
const limitsTableRetries = { retryOptions: { maxRetries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000 } };
const limitsBlobRetries = {
  retryOptions: { maxTries: 3, retryDelayInMs: 200, maxRetryDelayInMs: 1000, tryTimeoutInMs: 5000 },
};

function clientsFromConnectionString(connectionString: string): StorageClients {
  const { QueueServiceClient, BlobServiceClient, TableClient } = storageSdks();
  // Azurite and other local endpoints speak plain http; the Tables client refuses that unless told.
  const insecure = /UseDevelopmentStorage=true|Endpoint=http:/i.test(connectionString);
  return {
    queues: QueueServiceClient.fromConnectionString(connectionString),
    blobs: BlobServiceClient.fromConnectionString(connectionString),
    table: (name) =>
      TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: insecure }),
    limitsTable: (name) =>
      TableClient.fromConnectionString(connectionString, name, {
        allowInsecureConnection: insecure,
        ...limitsTableRetries,
      }),
    limitsBlobs: BlobServiceClient.fromConnectionString(connectionString, limitsBlobRetries),
  };
}

/** The template's storage account allows no shared keys: the Function App's identity signs in instead. */
function clientsFromIdentity(accountName: string, credential: TokenCredential): StorageClients {
  const { QueueServiceClient, BlobServiceClient, TableClient } = storageSdks();
  const endpoint = (service: 'queue' | 'blob' | 'table') =>
    `https://${accountName}.${service}.core.windows.net`;
  return {
    queues: new QueueServiceClient(endpoint('queue'), credential),
    blobs: new BlobServiceClient(endpoint('blob'), credential),
    table: (name) => new TableClient(endpoint('table'), name, credential),
    limitsTable: (name) => new TableClient(endpoint('table'), name, credential, limitsTableRetries),
    limitsBlobs: new BlobServiceClient(endpoint('blob'), credential, limitsBlobRetries),
  };
}

/** @azure/identity is loaded on the first storage request, not at start-up (cold start). */
function lazyCredential(load: () => Promise<TokenCredential>): TokenCredential {
  let credential: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      credential ??= load();
      return (await credential).getToken(scopes, options);
    },
  };
}
