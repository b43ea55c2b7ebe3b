// Messages between the benchmark and its peers process (bench/peersHost.ts).
export interface PeersReady {
  type: 'ready';
  cert: string;
  smtpPort: number;
  authorityHost: string;
  tenantId: string;
  vaultUrl: string;
}

export interface PeerStats {
  type: 'stats';
  /** Messages the SMTP peer accepted so far. */
  delivered: number;
  tokenRequests: number;
  /** Authenticated Key Vault GET secret requests. */
  vaultReads: number;
  smtpConnections: number;
  smtpAuthentications: number;
  peakConnectionsPerUser: number;
  /** Per signed-in mailbox: messages accepted so far, and the most concurrent sessions seen. */
  deliveredByUser: Record<string, number>;
  peakConnectionsByUser: Record<string, number>;
}

export type PeerCommand = { type: 'stats' } | { type: 'latency'; ms: number } | { type: 'close' };
export type PeerReply = PeerStats | { type: 'ok' };
