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

  it('registers the consent routes, the status route and the tokenRefresh timer', async () => {
    const http = vi.spyOn(app, 'http');
    const timer = vi.spyOn(app, 'timer');
    await import('../../functions/oauthStart.ts');
    await import('../../functions/oauthCallback.ts');
    await import('../../functions/status.ts');
    await import('../../functions/tokenRefresh.ts');
    expect(http).toHaveBeenCalledWith(
      'oauthStart',
      expect.objectContaining({ route: 'oauth/start', methods: ['GET'], authLevel: 'function' }),
    );
    expect(http).toHaveBeenCalledWith(
      'oauthCallback',
      expect.objectContaining({ route: 'oauth/callback', methods: ['GET'], authLevel: 'anonymous' }),
    );
    expect(http).toHaveBeenCalledWith(
      'status',
      expect.objectContaining({ route: 'status', methods: ['GET'], authLevel: 'admin' }),
    );
    expect(timer).toHaveBeenCalledWith(
      'tokenRefresh',
      expect.objectContaining({ schedule: '0 0 */6 * * *', handler: expect.any(Function) }),
    );
  });
});
