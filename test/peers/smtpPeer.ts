import { EventEmitter, once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import addressparser from 'nodemailer/lib/addressparser';
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
 * Faults are scripted per SMTP stage with the exact reply code and text Exchange sends. Like Exchange, it refuses
 * a message whose From header names a mailbox the login holds no Send As or Send on Behalf right on, and a
 * login beyond the per-mailbox session limit.
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
  /** False for a refused token, a scripted AUTH reply, and a login over `maxSessionsPerUser`. */
  accepted: boolean;
}

/** A message answered 554 5.2.252 SendAsDenied because the login may not send as its From address. */
export interface SendAsRefusal {
  /** The XOAUTH2 user name of the login, as the client sent it. */
  authUser: string;
  /** The From address the login holds no right on. */
  from: string;
  /** The address of the Sender header, when the message had one. */
  sender?: string;
}

/** Per trustee (the mailbox that logs in): the addresses it holds a right on. */
export type SendRightGrants = Record<string, string[]>;

export interface SmtpPeerOptions {
  /** Defaults to the process-wide sharedTestCertificate(), which the vitest setup file trusts. */
  certificate?: TestCertificate;
  /** Decides whether an XOAUTH2 login succeeds; by default any non-empty token is accepted. */
  authorize?: (user: string, accessToken: string) => boolean | Promise<boolean>;
  /** The SIZE advertised in EHLO, and the limit DATA enforces. Defaults to Exchange Online's 150 MiB. */
  sizeLimitBytes?: number;
  /** Send As rights: a login may put these addresses in From. Mailboxes compare case-insensitively. */
  sendAs?: SendRightGrants;
  /** Send on Behalf rights: a login may put these addresses in From when Sender names the login itself. */
  sendOnBehalf?: SendRightGrants;
  /**
   * Authenticated sessions one mailbox may hold open at once; a login beyond it is answered 432 4.3.2.
   * Exchange Online allows 3. No limit by default.
   */
  maxSessionsPerUser?: number;
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
  /** Per authenticated mailbox (lower case): the messages accepted from its logins. */
  readonly messagesByUser: Map<string, number>;
  /** Per mailbox (lower case): the successful XOAUTH2 logins. */
  readonly loginsByUser: Map<string, number>;
  /** Logins answered 432 4.3.2 because the mailbox already held `maxSessionsPerUser` sessions. */
  readonly throttledLogins: number;
  /** Messages refused with 554 5.2.252 SendAsDenied, in the order they arrived. */
  readonly sendAsRefusals: SendAsRefusal[];
  /** Lets `trustee` send with `address` in From. */
  grantSendAs(trustee: string, address: string): void;
  /** Lets `trustee` send with `address` in From and itself in Sender. */
  grantSendOnBehalf(trustee: string, address: string): void;
  /** Takes away every Send As and Send on Behalf right, the configured ones included. */
  revokeSendRights(): void;
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
  /**
   * Forgets recorded messages, attempts, refusals, counters and scripts; open connections stay counted as
   * open. Send rights and the session limit stay: they are configuration, not records.
   */
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
/** Exchange Online's answer to the 4th concurrent session of one mailbox. */
const SENDER_THREAD_LIMIT_EXCEEDED: SmtpReply = {
  code: 432,
  message: '4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded',
};

/** Exchange Online's answer, after the whole DATA, to a From the login holds no right on. */
function sendAsDenied(authUser: string, from: string): SmtpReply {
  return {
    code: 554,
    message:
      `5.2.252 SendAsDenied; ${authUser} not allowed to send as ${from}; ` +
      'STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; ' +
      'Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.',
  };
}

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

/** Exchange resolves addresses to mailboxes without regard to case. */
function mailboxKey(address: string): string {
  return address.trim().toLowerCase();
}

function addGrant(grants: Map<string, Set<string>>, trustee: string, address: string): void {
  const addresses = grants.get(mailboxKey(trustee)) ?? new Set<string>();
  addresses.add(mailboxKey(address));
  grants.set(mailboxKey(trustee), addresses);
}

function grantsFrom(configured: SendRightGrants = {}): Map<string, Set<string>> {
  const grants = new Map<string, Set<string>>();
  for (const [trustee, addresses] of Object.entries(configured)) {
    for (const address of addresses) addGrant(grants, trustee, address);
  }
  return grants;
}

interface OriginatorHeaders {
  /** Every mailbox of the From header (RFC 5322 allows several authors); empty without a From header. */
  authors: string[];
  /** The mailbox of the Sender header, if there is one. */
  sender: string | undefined;
}

/** The header section ends at the first empty line (RFC 5322 section 2.1), which may be the very first. */
function headerSectionOf(raw: Buffer): Buffer {
  if (raw[0] === 0x0a || (raw[0] === 0x0d && raw[1] === 0x0a)) return raw.subarray(0, 0);
  const ends = [raw.indexOf('\n\r\n'), raw.indexOf('\n\n')].filter((index) => index >= 0);
  return raw.subarray(0, ends.length > 0 ? Math.min(...ends) : raw.length);
}

/**
 * Reads From and Sender from the header section only, so a "From:" line in the body counts for nothing.
 * Folded lines are unfolded first (RFC 5322 section 2.2.3); addressparser then separates the address from
 * display names, quoted commas, comments and encoded words.
 */
function readOriginatorHeaders(raw: Buffer): OriginatorHeaders {
  const fields = new Map<string, string>();
  const unfolded = headerSectionOf(raw)
    .toString('utf8')
    .replace(/\r?\n(?=[ \t])/g, '');
  for (const line of unfolded.split(/\r?\n/)) {
    const field = /^([^:\s]+)\s*:([^\r]*)\r?$/.exec(line);
    const name = field?.[1]?.toLowerCase();
    // The first occurrence counts; RFC 5322 allows From and Sender once each.
    if (name !== undefined && !fields.has(name)) fields.set(name, field?.[2] ?? '');
  }
  const mailboxesOf = (name: string): string[] =>
    addressparser(fields.get(name), { flatten: true })
      .map((mailbox) => mailbox.address)
      .filter((address) => address.length > 0);
  return { authors: mailboxesOf('from'), sender: mailboxesOf('sender')[0] };
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
  const maxSessionsPerUser = options.maxSessionsPerUser ?? Number.POSITIVE_INFINITY;
  const sendAsGrants = grantsFrom(options.sendAs);
  const sendOnBehalfGrants = grantsFrom(options.sendOnBehalf);

  const messages: ReceivedMessage[] = [];
  const authAttempts: SmtpAuthAttempt[] = [];
  const peakOpenConnectionsByUser = new Map<string, number>();
  const messagesByUser = new Map<string, number>();
  const loginsByUser = new Map<string, number>();
  const sendAsRefusals: SendAsRefusal[] = [];
  let throttledLogins = 0;
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
      if (mailboxKey(login.user) === mailboxKey(user)) count += 1;
    }
    return count;
  }

  function countFor(counts: Map<string, number>, user: string): void {
    counts.set(mailboxKey(user), (counts.get(mailboxKey(user)) ?? 0) + 1);
  }

  /** Exchange's rule: the login itself, a Send As right (Sender absent or the author), or on behalf of. */
  function mayWriteAs(authUser: string, author: string, sender: string | undefined): boolean {
    const trustee = mailboxKey(authUser);
    const authorKey = mailboxKey(author);
    const senderKey = sender === undefined ? undefined : mailboxKey(sender);
    if (authorKey === trustee) return true;
    if (sendAsGrants.get(trustee)?.has(authorKey) && (senderKey === undefined || senderKey === authorKey)) {
      return true;
    }
    return senderKey === trustee && (sendOnBehalfGrants.get(trustee)?.has(authorKey) ?? false);
  }

  /** The SendAsDenied reply for a message its login may not send, recorded; undefined when it may. */
  function refuseUnlessAllowedToSend(authUser: string, raw: Buffer): SmtpReply | undefined {
    const { authors, sender } = readOriginatorHeaders(raw);
    // A message without From claims no one else's identity, so there is nothing to refuse.
    const refusedAuthor = authors.find((author) => !mayWriteAs(authUser, author, sender));
    if (refusedAuthor === undefined) return undefined;
    sendAsRefusals.push(
      sender === undefined ? { authUser, from: refusedAuthor } : { authUser, from: refusedAuthor, sender },
    );
    return sendAsDenied(authUser, refusedAuthor);
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
    const authorized =
      !scripted && session.secure && auth.method === 'XOAUTH2' && (await authorize(user, accessToken));
    // Nothing below awaits, so two logins of one mailbox cannot both slip under the session limit.
    const throttled = authorized && openAuthenticatedConnections(user) >= maxSessionsPerUser;
    authAttempts.push({ user, accessToken, accepted: authorized && !throttled });
    if (throttled) {
      throttledLogins += 1;
      return SENDER_THREAD_LIMIT_EXCEEDED;
    }
    if (!authorized) {
      return scripted ?? AUTH_REFUSED;
    }
    const login = { user, accessToken };
    // A client that hung up during the token check holds no session, and must not count against the limit.
    if (!openSessions.has(session.id)) return login;
    loginsBySession.set(session.id, login);
    countFor(loginsByUser, user);
    const previousPeak = peakOpenConnectionsByUser.get(user) ?? 0;
    peakOpenConnectionsByUser.set(user, Math.max(previousPeak, openAuthenticatedConnections(user)));
    changes.emit('change');
    return login;
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
        const authUser = login?.user ?? '';
        const raw = Buffer.concat(chunks);
        const sendAsRefusal = refuseUnlessAllowedToSend(authUser, raw);
        if (sendAsRefusal) {
          answerLater(callback, sendAsRefusal);
          return;
        }
        const mailFrom = session.envelope.mailFrom;
        messages.push({
          envelopeFrom: mailFrom ? mailFrom.address : '',
          envelopeTo: session.envelope.rcptTo.map((recipient) => recipient.address),
          authUser,
          accessToken: login?.accessToken ?? '',
          raw,
          receivedAt: Date.now(),
        });
        countFor(messagesByUser, authUser);
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
    messagesByUser,
    loginsByUser,
    sendAsRefusals,
    get throttledLogins() {
      return throttledLogins;
    },
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

    grantSendAs(trustee, address) {
      addGrant(sendAsGrants, trustee, address);
    },

    grantSendOnBehalf(trustee, address) {
      addGrant(sendOnBehalfGrants, trustee, address);
    },

    revokeSendRights() {
      sendAsGrants.clear();
      sendOnBehalfGrants.clear();
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
      messagesByUser.clear();
      loginsByUser.clear();
      sendAsRefusals.length = 0;
      throttledLogins = 0;
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
