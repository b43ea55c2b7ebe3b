import type { TableClient } from '@azure/data-tables';
import { RelayError } from '../errors.ts';
import { sha256 } from '../sha256.ts';
import { withStorage } from '../storage/storageErrors.ts';

/**
 * The status of each queued message, one Table storage row per message: partition = message id (Table
 * storage serves a partition from one server, about 2,000 entities/s, so per-message partitions spread the
 * load), row = the caller's hash, so a lookup by another caller finds nothing. Every change is written with the row's ETag: the processor's claim on a
 * message ("sending") is a conditional update, so two copies of one queue message never both send it.
 */
export type SendState = 'queued' | 'sending' | 'sent' | 'failed';

export interface SendError {
  code: string;
  message: string;
  remedy?: string;
}

export interface SendStatus {
  id: string;
  callerName: string;
  sender: string;
  state: SendState;
  /** SMTP attempts started so far. */
  attempts: number;
  createdAt: string;
  updatedAt: string;
  /** The Message-ID header the message is sent with, the same on every attempt. */
  messageId: string;
  /** Set while a processor owns the message (state "sending"); ms since the epoch. */
  leaseUntil?: number;
  nextAttemptAt?: string;
  smtpResponse?: string;
  /** Once sent: the mailbox that signed in, when a sender route made it another than `sender`. */
  signedInAs?: string;
  lastError?: SendError;
  /** Name of the blob holding the body when it was too large for a queue message. */
  bodyBlob?: string;
  /** The body's size, counted against the caller's queue quota until the message settles. */
  queuedBytes?: number;
}

export interface VersionedStatus {
  status: SendStatus;
  etag: string;
}

export interface SendStatusStore {
  create(status: SendStatus): Promise<void>;
  get(callerName: string, id: string): Promise<VersionedStatus | undefined>;
  /** Replaces the row if it still has `etag`; returns the new ETag, or undefined when someone else won. */
  replace(status: SendStatus, etag: string): Promise<string | undefined>;
  remove(callerName: string, id: string): Promise<void>;
}

interface StatusEntity {
  partitionKey: string;
  rowKey: string;
  callerName: string;
  sender: string;
  state: SendState;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  messageId: string;
  // Stored as text: Table storage infers Int32 for bare JSON integers, and milliseconds overflow it.
  leaseUntil?: string;
  nextAttemptAt?: string;
  smtpResponse?: string;
  signedInAs?: string;
  errorCode?: string;
  errorMessage?: string;
  errorRemedy?: string;
  bodyBlob?: string;
  queuedBytes?: number;
}

export const callerPartition = (callerName: string) => sha256(callerName);

function toEntity(status: SendStatus): StatusEntity {
  const { id, lastError, leaseUntil, ...rest } = status;
  const entity: StatusEntity = { partitionKey: id, rowKey: callerPartition(status.callerName), ...rest };
  if (leaseUntil !== undefined) entity.leaseUntil = String(leaseUntil);
  if (lastError !== undefined) {
    entity.errorCode = lastError.code;
    entity.errorMessage = lastError.message;
    if (lastError.remedy !== undefined) entity.errorRemedy = lastError.remedy;
  }
  return entity;
}

function fromEntity(entity: StatusEntity): SendStatus {
  const status: SendStatus = {
    id: entity.partitionKey,
    callerName: entity.callerName,
    sender: entity.sender,
    state: entity.state,
    attempts: entity.attempts,
    createdAt: entity.createdAt,
    updatedAt: entity.updatedAt,
    messageId: entity.messageId,
  };
  if (entity.leaseUntil !== undefined) status.leaseUntil = Number(entity.leaseUntil);
  if (entity.nextAttemptAt !== undefined) status.nextAttemptAt = entity.nextAttemptAt;
  if (entity.smtpResponse !== undefined) status.smtpResponse = entity.smtpResponse;
  if (entity.signedInAs !== undefined) status.signedInAs = entity.signedInAs;
  if (entity.bodyBlob !== undefined) status.bodyBlob = entity.bodyBlob;
  if (entity.queuedBytes !== undefined) status.queuedBytes = Number(entity.queuedBytes);
  if (entity.errorCode !== undefined) {
    status.lastError = {
      code: entity.errorCode,
      message: entity.errorMessage ?? '',
      ...(entity.errorRemedy === undefined ? {} : { remedy: entity.errorRemedy }),
    };
  }
  return status;
}

export function createSendStatusStore(table: TableClient): SendStatusStore {
  return {
    async create(status) {
      await withStorage(() => table.createEntity(toEntity(status)));
    },
    async get(callerName, id) {
      const entity = await withStorage(
        () => table.getEntity<StatusEntity>(id, callerPartition(callerName)),
        [404],
      );
      return entity === undefined ? undefined : { status: fromEntity(entity), etag: entity.etag };
    },
    async replace(status, etag) {
      const result = await withStorage(
        () => table.updateEntity(toEntity(status), 'Replace', { etag }),
        [412, 404],
      );
      return result === undefined ? undefined : (result.etag ?? '*');
    },
    async remove(callerName, id) {
      await withStorage(() => table.deleteEntity(id, callerPartition(callerName)), [404]);
    },
  };
}

/** What `GET /api/send/{id}` shows a caller: never the body, the lease or internal names. */
export function publicStatus(status: SendStatus): Record<string, unknown> {
  return {
    id: status.id,
    state: status.state,
    sender: status.sender,
    attempts: status.attempts,
    createdAt: status.createdAt,
    updatedAt: status.updatedAt,
    messageId: status.messageId,
    ...(status.state === 'queued' && status.nextAttemptAt !== undefined
      ? { nextAttemptAt: status.nextAttemptAt }
      : {}),
    ...(status.smtpResponse === undefined ? {} : { smtpResponse: status.smtpResponse }),
    ...(status.signedInAs === undefined ? {} : { signedInAs: status.signedInAs }),
    ...(status.lastError === undefined
      ? {}
      : { [status.state === 'failed' ? 'error' : 'lastError']: status.lastError }),
  };
}

export function sendNotFound(id: string): RelayError {
  return new RelayError('send_not_found', {
    message: `No queued message ${id.slice(0, 100)} belongs to this caller.`,
  });
}

/**
 * GET /api/send/{id}: what the caller sees of one of its queued messages. An id that is not of the form
 * the relay issues, or one queued by another caller, is simply not found.
 */
export async function findPublicStatus(
  storageReady: () => Promise<void>,
  statuses: SendStatusStore,
  callerName: string,
  id: string,
): Promise<Record<string, unknown>> {
  if (!/^[0-9a-f-]{36}$/.test(id)) throw sendNotFound(id);
  await withStorage(storageReady);
  const found = await statuses.get(callerName, id);
  if (found === undefined) throw sendNotFound(id);
  return publicStatus(found.status);
}
