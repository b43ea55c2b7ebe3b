import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config.ts';
import { createSenderRouter } from '../../shared/senderRoutes.ts';

function problemsOf(mailboxes: unknown[], routes: unknown[]): string[] {
  try {
    loadConfig({ RELAY_MAILBOXES: JSON.stringify(mailboxes), RELAY_SENDER_ROUTES: JSON.stringify(routes) });
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems;
  }
}

const relay = { address: 'relay@contoso.com', mode: 'app' };

describe('RELAY_SENDER_ROUTES at start-up', () => {
  it('accepts Send As, on behalf and a pool whose sign-in mailboxes are all listed', () => {
    expect(
      problemsOf(
        [relay, { address: 'assistant@contoso.com', mode: 'delegated' }],
        [
          { from: 'Team@Contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
          { from: 'ceo@contoso.com', signIn: ['assistant@contoso.com'], relation: 'sendOnBehalf' },
          {
            from: '*@notify.contoso.com',
            signIn: ['relay@contoso.com', 'assistant@contoso.com'],
            relation: 'sendAs',
          },
        ],
      ),
    ).toEqual([]);
  });

  it('names a sign-in mailbox that RELAY_MAILBOXES does not list, and how to list it', () => {
    expect(
      problemsOf([], [{ from: 'team@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' }]),
    ).toEqual([
      'RELAY_SENDER_ROUTES at 0: sign-in mailbox relay@contoso.com is not listed in RELAY_MAILBOXES; add {"address":"relay@contoso.com","mode":"app"} (or "delegated")',
    ]);
  });

  it('refuses chains and cycles: a sign-in mailbox that is itself routed', () => {
    const problems = problemsOf(
      [relay, { address: 'team@contoso.com', mode: 'app' }],
      [
        { from: 'team@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
        { from: 'relay@contoso.com', signIn: ['team@contoso.com'], relation: 'sendAs' },
      ],
    );
    expect(problems).toContain(
      "RELAY_SENDER_ROUTES at 0: sign-in mailbox relay@contoso.com is itself routed to team@contoso.com; routes do not chain (Exchange checks the signed-in mailbox's own right)",
    );
    expect(
      problems.some((problem) =>
        problem.startsWith('RELAY_SENDER_ROUTES at 1: sign-in mailbox team@contoso.com is itself routed'),
      ),
    ).toBe(true);
  });

  it('refuses an address that signs in for itself, a route listed twice and a bad relation', () => {
    expect(
      problemsOf([relay], [{ from: 'relay@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' }]),
    ).toContain(
      'RELAY_SENDER_ROUTES at 0: relay@contoso.com cannot sign in for itself; leave it out of RELAY_SENDER_ROUTES',
    );
    const route = { from: 'team@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' };
    expect(problemsOf([relay], [route, route])).toEqual(['RELAY_SENDER_ROUTES: routes an address twice']);
    expect(problemsOf([relay], [{ ...route, relation: 'impersonate' }])[0]).toMatch(
      /^RELAY_SENDER_ROUTES at 0\.relation: /,
    );
  });
});

describe('createSenderRouter', () => {
  const config = loadConfig({
    RELAY_MAILBOXES: JSON.stringify([
      relay,
      { address: 'pool@contoso.com', mode: 'app' },
      { address: 'owner@contoso.com', mode: 'delegated' },
    ]),
    RELAY_SENDER_ROUTES: JSON.stringify([
      { from: 'ceo@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendOnBehalf' },
      { from: '*@contoso.com', signIn: ['pool@contoso.com'], relation: 'sendAs' },
    ]),
  });
  const router = createSenderRouter(config.senderRoutes, config.mailboxes);

  it('prefers an exact route over a domain route', () => {
    expect(router.route('CEO@contoso.com')).toEqual({
      from: 'ceo@contoso.com',
      relation: 'sendOnBehalf',
      signIn: ['relay@contoso.com'],
    });
    expect(router.route('sales@contoso.com')).toEqual({
      from: 'sales@contoso.com',
      relation: 'sendAs',
      signIn: ['pool@contoso.com'],
    });
  });

  it('lets a listed mailbox at a routed domain sign in as itself', () => {
    expect(router.route('owner@contoso.com')).toEqual({
      from: 'owner@contoso.com',
      relation: 'self',
      signIn: ['owner@contoso.com'],
    });
    expect(router.outsideDomainRoutes()).toEqual([
      'relay@contoso.com',
      'pool@contoso.com',
      'owner@contoso.com',
      'ceo@contoso.com',
    ]);
  });

  it('lets a sign-in mailbox at a routed domain sign in as itself', () => {
    expect(router.route('pool@contoso.com')).toEqual({
      from: 'pool@contoso.com',
      relation: 'self',
      signIn: ['pool@contoso.com'],
    });
    expect(router.route('relay@contoso.com').relation).toBe('self');
    expect(router.route('someone@fabrikam.com').relation).toBe('self');
  });
});
