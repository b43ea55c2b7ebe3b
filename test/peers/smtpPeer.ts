import { EventEmitter, once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import {
  SMTPServer,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerDataStream,
  type SMTPServerError,
  type SMTPServerSession,
} from 'smtp-server';
import { sharedTestCertificate, type TestCertificate } from './testCertificate.ts';

/**
 * A loopback stand-in for smtp.office365.com:587: STARTTLS is offered, AUTH XOAUTH2 is only accepted on a
 * TLS connection, and MAIL/RCPT/DATA are refused until the client has authenticated, as Exchange Online does.
 * Faults are scripted per SMTP stage with the exact reply code and text Exchange sends.
 */

/** The SMTP stages whose replies a test can script. */
export type SmtpStage = 'auth' | 'mail' | 'rcpt' | 'data';

export interface ScriptedSmtpReply {
  stage: SmtpStage;
  /** The SMTP reply code, e.g. 535, 554, 451. */
  code: number;
  /** The reply text after the code, e.g. '5.7.139 Authentication unsuccessful, ...'. Sent verbatim. */
  message: string;
  /** How many consecutive commands of that stage get this reply; 1 by default. */
  times?: number;
}

/**
 * Where a scripted connection drop happens: at MAIL FROM (before DATA), in the middle of the message
 * (after its first bytes, so the server keeps nothing), or after the whole message arrived but before the
 * 250 reply (the server keeps it, the client never learns: the classic duplicate risk).
 */
export type SmtpDropPoint = 'mail' | 'during-data' | 'after-data';

export interface ReceivedMessage {
  envelopeFrom: string;
  envelopeTo: string[];
  /** The user name of the XOAUTH2 login that sent the message. */
  authUser: string;
  /** The bearer token of that login. */
  accessToken: string;
  /** The message exactly as sent after DATA, headers included. */
  raw: Buffer;
  /** When the server accepted it. */
  receivedAt: number;
}

export interface SmtpAuthAttempt {
  user: string;
  accessToken: string;
  accepted: boolean;
}

export interface SmtpPeerOptions {
  /** Defaults to the process-wide sharedTestCertificate(), which the vitest setup file trusts. */
  certificate?: TestCertificate;
  /** Decides whether an XOAUTH2 login succeeds; by default any non-empty token is accepted. */
  authorize?: (user: string, accessToken: string) => boolean | Promise<boolean>;
  /** The SIZE advertised in EHLO, and the limit DATA enforces. Defaults to Exchange Online's 150 MiB. */
  sizeLimitBytes?: number;
}

export interface SmtpPeer {
  readonly host: string;
  readonly port: number;
  readonly messages: ReceivedMessage[];
  readonly authAttempts: SmtpAuthAttempt[];
  /** Connections ever opened, including the ones still open. */
  readonly connectionCount: number;
  readonly openConnections: number;
  readonly peakOpenConnections: number;
  /** Per XOAUTH2 user: the highest number of authenticated connections that were open at the same time. */
  readonly peakOpenConnectionsByUser: Map<string, number>;
  /** Queues a reply for the next command(s) of a stage; replies of one stage are used in the order queued. */
  replyNext(reply: ScriptedSmtpReply): void;
  /** Delays every MAIL, RCPT and DATA answer by this many milliseconds, to imitate a remote server. */
  setCommandLatency(ms: number): void;
  /** Drops the TCP connection (no reply) at a point of the next `times` (1) transactions. */
  dropNext(point: SmtpDropPoint, times?: number): void;
  /** Never answers the next `times` (1) MAIL FROM commands: a server that stalls past the socket timeout. */
  stallNext(times?: number): void;
  /**
   * Answers this fraction of messages at the end of DATA with 451 4.7.0 (nothing kept), drawing from
   * `random` (a seeded generator keeps a test repeatable). 0 turns it off.
   */
  setTransientFailureRate(rate: number, random?: () => number): void;
  /** Messages answered 451 by the transient failure rate. */
  readonly injectedTransientFailures: number;
  /** Resolves with the messages once at least `count` were accepted; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs?: number): Promise<ReceivedMessage[]>;
  /** Resolves once every client connection is closed (the server notices a close asynchronously). */
  waitForNoOpenConnections(timeoutMs?: number): Promise<void>;
  /** Forgets recorded messages, attempts, counters and scripts; open connections stay counted as open. */
  reset(): void;
  close(): Promise<void>;
}

/** Exchange Online advertises `SIZE 157286400` on smtp.office365.com. */
const EXCHANGE_ONLINE_SIZE_LIMIT_BYTES = 157_286_400;
const DEFAULT_WAIT_TIMEOUT_MS = 10_000;

const AUTH_REFUSED: SmtpReply = { code: 535, message: '5.7.3 Authentication unsuccessful' };
const NOT_AUTHENTICATED_MESSAGE = '5.7.57 Client not authenticated to send mail';
const MESSAGE_TOO_LARGE: SmtpReply = {
  code: 552,
  message: '5.3.4 Message size exceeds fixed maximum message size',
};

interface SmtpReply {
  code: number;
  message: string;
}

interface AuthenticatedLogin {
  user: string;
  accessToken: string;
}

function smtpError(reply: SmtpReply): SMTPServerError {
  const error: SMTPServerError = new Error(reply.message);
  // smtp-server writes `${responseCode} ${message}`; nodemailer turns that line into err.responseCode and
  // err.response. Enhanced status codes stay hidden (smtp-server's default) so it adds no second x.y.z.
  error.responseCode = reply.code;
  return error;
}

function waitForCondition(
  changes: EventEmitter,
  isMet: () => boolean,
  timeoutMs: number,
  describeFailure: () => string,
): Promise<void> {
  if (isMet()) {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const onChange = (): void => {
      if (isMet()) {
        clearTimeout(timer);
        changes.off('change', onChange);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      changes.off('change', onChange);
      reject(new Error(describeFailure()));
    }, timeoutMs);
    changes.on('change', onChange);
  });
}

export async function startSmtpPeer(options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const certificate = options.certificate ?? (await sharedTestCertificate());
  const authorize = options.authorize ?? ((_user: string, accessToken: string) => accessToken.length > 0);
  const sizeLimitBytes = options.sizeLimitBytes ?? EXCHANGE_ONLINE_SIZE_LIMIT_BYTES;

  const messages: ReceivedMessage[] = [];
  const authAttempts: SmtpAuthAttempt[] = [];
  const peakOpenConnectionsByUser = new Map<string, number>();
  const scripts = new Map<SmtpStage, SmtpReply[]>();
  const openSessions = new Set<string>();
  const loginsBySession = new Map<string, AuthenticatedLogin>();
  const changes = new EventEmitter();
  let connectionCount = 0;
  let peakOpenConnections = 0;
  let commandLatencyMs = 0;
  const drops = new Map<SmtpDropPoint, number>();
  let stalls = 0;
  let transientFailureRate = 0;
  let transientRandom: () => number = Math.random;
  let injectedTransientFailures = 0;
  const rawSockets = new Map<number, Socket>();
  const sessionPorts = new Map<string, number>();

  function takeDrop(point: SmtpDropPoint): boolean {
    const left = drops.get(point) ?? 0;
    if (left === 0) return false;
    drops.set(point, left - 1);
    return true;
  }

  /** Destroys the client's TCP connection underneath TLS, as a network failure or a crashed server would. */
  function dropConnection(sessionId: string): void {
    const port = sessionPorts.get(sessionId);
    if (port !== undefined) rawSockets.get(port)?.destroy();
  }

  function takeScriptedReply(stage: SmtpStage): SmtpReply | undefined {
    return scripts.get(stage)?.shift();
  }

  function openAuthenticatedConnections(user: string): number {
    let count = 0;
    for (const login of loginsBySession.values()) {
      if (login.user === user) count += 1;
    }
    return count;
  }

  /** Answers after the configured latency, so a benchmark sees a remote server's round trips. */
  function answerLater(callback: (err?: Error | null) => void, reply: SmtpReply | undefined): void {
    const answer = (): void => callback(reply ? smtpError(reply) : null);
    if (commandLatencyMs > 0) {
      setTimeout(answer, commandLatencyMs);
    } else {
      setImmediate(answer);
    }
  }

  async function handleAuth(
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
  ): Promise<SmtpReply | AuthenticatedLogin> {
    const user = auth.username ?? '';
    const accessToken = auth.accessToken ?? '';
    const scripted = takeScriptedReply('auth');
    // smtp-server already refuses AUTH before STARTTLS; checking again keeps the rule visible here.
    const accepted =
      !scripted && session.secure && auth.method === 'XOAUTH2' && (await authorize(user, accessToken));
    authAttempts.push({ user, accessToken, accepted });
    if (!accepted) {
      return scripted ?? AUTH_REFUSED;
    }
    return { user, accessToken };
  }

  const server = new SMTPServer({
    secure: false,
    key: certificate.key,
    cert: certificate.cert,
    name: 'smtp-peer.localhost',
    banner: 'Microsoft ESMTP MAIL Service ready (loopback test peer)',
    authMethods: ['XOAUTH2'],
    authOptional: false,
    authRequiredMessage: NOT_AUTHENTICATED_MESSAGE,
    allowInsecureAuth: false,
    size: sizeLimitBytes,
    disableReverseLookup: true,
    logger: false,
    // close() ends the remaining sessions itself, so pooled clients never hold the peer open.
    closeTimeout: 1_000,

    onConnect(session, callback) {
      sessionPorts.set(session.id, session.remotePort);
      connectionCount += 1;
      openSessions.add(session.id);
      peakOpenConnections = Math.max(peakOpenConnections, openSessions.size);
      changes.emit('change');
      callback();
    },

    onClose(session) {
      sessionPorts.delete(session.id);
      openSessions.delete(session.id);
      loginsBySession.delete(session.id);
      changes.emit('change');
    },

    onAuth(
      auth,
      session,
      callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
    ) {
      handleAuth(auth, session).then(
        (outcome) => {
          if ('code' in outcome) {
            callback(smtpError(outcome));
            return;
          }
          loginsBySession.set(session.id, outcome);
          const concurrent = openAuthenticatedConnections(outcome.user);
          const previousPeak = peakOpenConnectionsByUser.get(outcome.user) ?? 0;
          peakOpenConnectionsByUser.set(outcome.user, Math.max(previousPeak, concurrent));
          changes.emit('change');
          callback(null, { user: outcome.user });
        },
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
    },

    onMailFrom(_address, session, callback) {
      if (takeDrop('mail')) {
        dropConnection(session.id);
        return;
      }
      if (stalls > 0) {
        stalls -= 1;
        return;
      }
      answerLater(callback, takeScriptedReply('mail'));
    },

    onRcptTo(_address, _session, callback) {
      answerLater(callback, takeScriptedReply('rcpt'));
    },

    onData(stream: SMTPServerDataStream, session, callback) {
      const chunks: Buffer[] = [];
      const dropDuring = takeDrop('during-data');
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        if (dropDuring && chunks.length === 1) dropConnection(session.id);
      });
      // The reply to DATA only goes out after the terminating dot, so read the whole message first.
      stream.on('end', () => {
        if (dropDuring) return;
        const scripted = takeScriptedReply('data');
        if (scripted || stream.sizeExceeded) {
          answerLater(callback, scripted ?? MESSAGE_TOO_LARGE);
          return;
        }
        if (transientFailureRate > 0 && transientRandom() < transientFailureRate) {
          injectedTransientFailures += 1;
          answerLater(callback, {
            code: 451,
            message: '4.7.0 Temporary server error. Please try again later',
          });
          return;
        }
        const login = loginsBySession.get(session.id);
        const mailFrom = session.envelope.mailFrom;
        messages.push({
          envelopeFrom: mailFrom ? mailFrom.address : '',
          envelopeTo: session.envelope.rcptTo.map((recipient) => recipient.address),
          authUser: login?.user ?? '',
          accessToken: login?.accessToken ?? '',
          raw: Buffer.concat(chunks),
          receivedAt: Date.now(),
        });
        changes.emit('change');
        if (takeDrop('after-data')) {
          dropConnection(session.id);
          return;
        }
        answerLater(callback, undefined);
      });
    },
  });

  server.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort;
    if (port === undefined) return;
    rawSockets.set(port, socket);
    socket.once('close', () => rawSockets.delete(port));
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const { port } = server.server.address() as AddressInfo;

  return {
    host: '127.0.0.1',
    port,
    messages,
    authAttempts,
    peakOpenConnectionsByUser,
    get connectionCount() {
      return connectionCount;
    },
    get openConnections() {
      return openSessions.size;
    },
    get peakOpenConnections() {
      return peakOpenConnections;
    },

    replyNext({ stage, code, message, times = 1 }) {
      const queue = scripts.get(stage) ?? [];
      for (let i = 0; i < times; i += 1) {
        queue.push({ code, message });
      }
      scripts.set(stage, queue);
    },

    setCommandLatency(ms) {
      commandLatencyMs = ms;
    },

    dropNext(point, times = 1) {
      drops.set(point, (drops.get(point) ?? 0) + times);
    },

    stallNext(times = 1) {
      stalls += times;
    },

    setTransientFailureRate(rate, random = Math.random) {
      transientFailureRate = rate;
      transientRandom = random;
    },

    get injectedTransientFailures() {
      return injectedTransientFailures;
    },

    async waitForMessages(count, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS) {
      await waitForCondition(
        changes,
        () => messages.length >= count,
        timeoutMs,
        () => `SMTP peer received ${messages.length} of ${count} expected message(s) within ${timeoutMs} ms`,
      );
      return messages;
    },

    waitForNoOpenConnections(timeoutMs = DEFAULT_WAIT_TIMEOUT_MS) {
      return waitForCondition(
        changes,
        () => openSessions.size === 0,
        timeoutMs,
        () => `SMTP peer still has ${openSessions.size} open connection(s) after ${timeoutMs} ms`,
      );
    },

    reset() {
      messages.length = 0;
      authAttempts.length = 0;
      scripts.clear();
      peakOpenConnectionsByUser.clear();
      connectionCount = 0;
      peakOpenConnections = openSessions.size;
      commandLatencyMs = 0;
      drops.clear();
      stalls = 0;
      transientFailureRate = 0;
      injectedTransientFailures = 0;
    },

    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Exchange ends idle sessions the same way; without this a pooled client keeps the server open.
      for (const connection of server.connections) {
        connection.send(421, '4.3.2 Service not available, closing transmission channel');
        connection.close();
      }
      await closed;
    },
  };
}
