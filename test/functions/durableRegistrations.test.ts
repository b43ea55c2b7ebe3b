import { app } from '@azure/functions';
import { describe, expect, it, vi } from 'vitest';

describe('registrations of the durable-sending and diagnostics functions', () => {
  it('registers GET /api/send/{id}, the relay-send queue trigger and the admin-only mailbox test', async () => {
    const http = vi.spyOn(app, 'http');
    const storageQueue = vi.spyOn(app, 'storageQueue');
    await import('../../functions/sendStatus.ts');
    await import('../../functions/sendQueued.ts');
    await import('../../functions/mailboxTest.ts');
    expect(http).toHaveBeenCalledWith(
      'sendStatus',
      expect.objectContaining({ route: 'send/{id}', methods: ['GET'], authLevel: 'function' }),
    );
    expect(storageQueue).toHaveBeenCalledWith(
      'sendQueued',
      expect.objectContaining({ queueName: 'relay-send', connection: 'RELAY_STORAGE_CONNECTION' }),
    );
    expect(http).toHaveBeenCalledWith(
      'mailboxTest',
      expect.objectContaining({ route: 'mailboxes/{address}/test', methods: ['POST'], authLevel: 'admin' }),
    );
  });
});
