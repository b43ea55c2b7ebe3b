import { app } from '@azure/functions';
import { describe, expect, it, vi } from 'vitest';

describe('function registrations', () => {
  it('registers POST /api/send behind a function key', async () => {
    const http = vi.spyOn(app, 'http');
    await import('../../functions/send.ts');
    expect(http).toHaveBeenCalledWith(
      'send',
      expect.objectContaining({
        route: 'send',
        methods: ['POST'],
        authLevel: 'function',
        handler: expect.any(Function),
      }),
    );
  });
});
