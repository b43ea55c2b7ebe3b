// The loopback peers of the benchmark, in their own process: the SMTP server (STARTTLS + XOAUTH2), the HTTPS
// identity provider and the HTTPS Key Vault. Running them apart from the measured process keeps their CPU
// and memory (the SMTP server keeps every message it receives) out of the relay's figures, the way
// Exchange Online and Entra ID are remote in production. The parent talks to it over the fork IPC channel.
import { startIdentityPeer } from '../test/peers/identityPeer.ts';
import { startKeyVaultPeer } from '../test/peers/keyVaultPeer.ts';
import { startSmtpPeer } from '../test/peers/smtpPeer.ts';
import { sharedTestCertificate } from '../test/peers/testCertificate.ts';
import type { PeerCommand, PeerReply, PeersReady } from './peerProtocol.ts';
import { poolSendAsGrants } from './poolAddresses.ts';

const certificate = await sharedTestCertificate();
const clientId = process.env.BENCH_CLIENT_ID ?? '';
const clientSecret = process.env.BENCH_CLIENT_SECRET ?? '';
const bareToken = process.env.BENCH_BARE_TOKEN ?? '';
const scope = process.env.BENCH_SMTP_SCOPE ?? '';

const identity = await startIdentityPeer({ certificate });
identity.registerClient({ clientId, clientSecret });
const smtp = await startSmtpPeer({
  certificate,
  // The bare nodemailer side presents one fixed token; the relay must present one the identity peer issued.
  authorize: (_user, accessToken) =>
    accessToken === bareToken || identity.isValidAccessToken(accessToken, { scope }),
  // Like Exchange, the peer checks the From address against the signed-in mailbox's rights after DATA.
  sendAs: poolSendAsGrants(),
});
const vault = await startKeyVaultPeer({ certificate, authority: identity.authority });
vault.putSecretDirect(process.env.BENCH_SECRET_NAME ?? 'relay-client-secret', clientSecret);

let delivered = 0;
// The peer keeps every raw message; the benchmark only needs the count, so drop them as they arrive.
const drain = setInterval(() => {
  delivered += smtp.messages.length;
  smtp.messages.length = 0;
}, 20);

function stats(): PeerReply {
  delivered += smtp.messages.length;
  smtp.messages.length = 0;
  return {
    type: 'stats',
    delivered,
    tokenRequests: identity.tokenRequests.length,
    vaultReads: vault.countOperations('get'),
    smtpConnections: smtp.connectionCount,
    smtpAuthentications: smtp.authAttempts.length,
    peakConnectionsPerUser: Math.max(0, ...smtp.peakOpenConnectionsByUser.values()),
    deliveredByUser: Object.fromEntries(smtp.messagesByUser),
    peakConnectionsByUser: Object.fromEntries(smtp.peakOpenConnectionsByUser),
  };
}

process.on('message', (command: PeerCommand) => {
  if (command.type === 'stats') process.send?.(stats());
  if (command.type === 'latency') {
    smtp.setCommandLatency(command.ms);
    process.send?.({ type: 'ok' } satisfies PeerReply);
  }
  if (command.type === 'close') {
    clearInterval(drain);
    Promise.all([smtp.close(), identity.close(), vault.close()]).then(() => {
      process.send?.({ type: 'ok' } satisfies PeerReply, () => process.exit(0));
    });
  }
});

const ready: PeersReady = {
  type: 'ready',
  cert: certificate.cert,
  smtpPort: smtp.port,
  authorityHost: identity.authorityHost,
  tenantId: identity.tenantId,
  vaultUrl: vault.vaultUrl,
};
process.send?.(ready);
