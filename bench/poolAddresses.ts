/**
 * The addresses of the sender-pool scenario (bench/pool.ts), apart from it so the peers process can grant
 * their Send As rights without loading the relay: one From address signed in for by one mailbox, another
 * by a pool of three.
 */
export const poolScenario = {
  singleFrom: 'single-team@bench.contoso.com',
  singleSignIn: ['single@bench.contoso.com'],
  pooledFrom: 'team@bench.contoso.com',
  pooledSignIn: ['pool0@bench.contoso.com', 'pool1@bench.contoso.com', 'pool2@bench.contoso.com'],
};

/** The Send As rights the SMTP peer holds for the scenario, as Exchange would after npm run exchange-setup. */
export function poolSendAsGrants(): Record<string, string[]> {
  return Object.fromEntries([
    ...poolScenario.singleSignIn.map((mailbox) => [mailbox, [poolScenario.singleFrom]]),
    ...poolScenario.pooledSignIn.map((mailbox) => [mailbox, [poolScenario.pooledFrom]]),
  ]);
}
