import { fork } from 'node:child_process';
import { once } from 'node:events';
import type { PeerCommand, PeerReply, PeerStats, PeersReady } from './peerProtocol.ts';

/** Starts bench/peersHost.ts as a child process and talks to it; one command at a time. */
export interface Peers {
  ready: PeersReady;
  stats(): Promise<PeerStats>;
  setCommandLatency(ms: number): Promise<void>;
  close(): Promise<void>;
}

export interface PeerIdentity {
  clientId: string;
  clientSecret: string;
  secretName: string;
  bareToken: string;
  smtpScope: string;
}

export async function startPeers(identity: PeerIdentity): Promise<Peers> {
  const child = fork(new URL('./peersHost.ts', import.meta.url), [], {
    env: {
      ...process.env,
      BENCH_CLIENT_ID: identity.clientId,
      BENCH_CLIENT_SECRET: identity.clientSecret,
      BENCH_SECRET_NAME: identity.secretName,
      BENCH_BARE_TOKEN: identity.bareToken,
      BENCH_SMTP_SCOPE: identity.smtpScope,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  const [first] = (await Promise.race([
    once(child, 'message'),
    exited.then(([code]) => {
      throw new Error(`the peers process exited with ${String(code)} before it was ready`);
    }),
  ])) as [PeersReady];

  let queue: Promise<unknown> = Promise.resolve();
  function ask<T extends PeerReply>(command: PeerCommand): Promise<T> {
    const reply = queue.then(async () => {
      child.send(command);
      const [message] = (await once(child, 'message')) as [T];
      return message;
    });
    queue = reply.catch(() => undefined);
    return reply;
  }

  return {
    ready: first,
    stats: () => ask<PeerStats>({ type: 'stats' }),
    setCommandLatency: async (ms) => {
      await ask({ type: 'latency', ms });
    },
    close: async () => {
      await ask({ type: 'close' });
      await exited;
    },
  };
}
