import { fork } from 'node:child_process';
import { once } from 'node:events';
import { jsonBodyLimit } from '../shared/api/requestBody.ts';
import { createHttpClient, type HttpAnswer } from './httpClient.ts';
import { benchRecipient } from './messages.ts';
import type { PeersReady } from './peerProtocol.ts';
import type { StallCommand, StallReply } from './stallProbe.ts';
import { megabytes, round } from './stats.ts';

/**
 * Hostile JSON bodies posted to POST /api/send with a valid least-privileged caller key (one sender), each
 * to a relay in its own fresh process (bench/stallProbe.ts) at the default limits; the bodies are built and
 * posted from this process, so that only the relay's work shows in its event loop. For each shape: the
 * relay's answer, its worst event-loop stall and how much its RSS grew.
 */
export interface HostileShapeResult {
  shape: string;
  bodyBytes: number;
  status: number;
  code: string | null;
  /** The larger of monitorEventLoopDelay's maximum and the largest 1 ms interval gap. */
  worstStallMs: number;
  rssGrowthMb: number;
}

export interface HostileResult {
  /** The body size the shapes were built to (the relay's JSON body limit in a full run). */
  bodyBytes: number;
  shapes: HostileShapeResult[];
  worstStallMs: number;
}

export interface HostileOptions {
  /** Build the shapes to this size instead of the relay's body limit (the smoke run's small bodies). */
  bodyBytes?: number | undefined;
  /** The address-list shape: this many strings of `addressChars` characters (900 of 20,000 by default). */
  addressStrings: number;
  addressChars: number;
}

const callerKey = 'bench-hostile-least-privileged-key-0123456789';
const sender = 'mailbox0@bench.contoso.com';
const jsonHeaders = { 'content-type': 'application/json', 'x-relay-key': callerKey };
const prefix = `{"from":"${sender}","to":"${benchRecipient}","subject":"Hostile","text":"x",`;

/** A JSON text of about `bytes` bytes: `head`, `unit` repeated to fill (then `close` as often), `tail`. */
function filled(head: string, unit: string, tail: string, bytes: number, close = ''): Buffer {
  const room = bytes - Buffer.byteLength(head) - Buffer.byteLength(tail);
  const run = Math.max(1, Math.floor(room / (unit.length + close.length)));
  return Buffer.concat([
    Buffer.from(head),
    Buffer.alloc(run * unit.length, unit),
    Buffer.alloc(run * close.length, close),
    Buffer.from(tail),
  ]);
}

/** The shapes of issue 14: each as large as the relay lets in, or as the address list's own size. */
function hostileShapes(bytes: number, options: HostileOptions): { shape: string; body: Buffer }[] {
  const addresses = Array.from({ length: Math.floor((options.addressChars + 1) / 7) }, () => 'a@b.io')
    .join(',')
    .padStart(options.addressChars, ' ');
  return [
    {
      shape: 'deeply nested',
      // Half opening, half closing brackets: nesting as deep as the body's size allows.
      body: filled(`${prefix}"headers":{"X-Nest":`, '[', '}}', bytes, ']'),
    },
    {
      shape: `${options.addressStrings} address strings of ${options.addressChars} characters`,
      body: Buffer.from(
        `{"from":"${sender}","to":[${Array.from({ length: options.addressStrings }, () => `"${addresses}"`).join(',')}],"subject":"Hostile","text":"x"}`,
      ),
    },
    {
      shape: 'array of tiny values',
      body: filled(`${prefix}"cc":[`, '0,', '0]}', bytes),
    },
    {
      shape: 'string of escapes',
      body: filled(
        `{"from":"${sender}","to":"${benchRecipient}","subject":"Hostile","text":"`,
        '\\u00e9\\n\\"\\\\',
        '"}',
        bytes,
      ),
    },
  ];
}

function chunked(body: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += 64 * 1024) {
    chunks.push(body.subarray(offset, offset + 64 * 1024));
  }
  return chunks;
}

const errorCode = (body: unknown) => (body as { error?: { code?: string } } | undefined)?.error?.code ?? null;

async function startProbe(peers: PeersReady) {
  const child = fork(new URL('./stallProbe.ts', import.meta.url), [], {
    env: {
      ...process.env,
      BENCH_PEERS: JSON.stringify(peers),
      BENCH_CALLER_KEY: callerKey,
      BENCH_SENDER: sender,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  // A probe left behind by a failure would keep the benchmark from exiting.
  const stop = () => {
    if (child.exitCode === null) child.kill();
  };
  const next = async <T extends StallReply['type']>(type: T) => {
    const [message] = (await Promise.race([
      once(child, 'message'),
      exited.then(([code]) => {
        throw new Error(`bench/stallProbe.ts exited with ${String(code)}`);
      }),
    ])) as [StallReply];
    if (message.type !== type) throw new Error(`bench/stallProbe.ts answered ${message.type}, not ${type}`);
    return message as Extract<StallReply, { type: T }>;
  };
  const ask = <T extends StallReply['type']>(command: StallCommand, type: T) => {
    const reply = next(type);
    child.send(command);
    return reply;
  };
  const ready = await next('ready');
  return { ready, ask, exited, stop };
}

export async function measureHostileJson(peers: PeersReady, options: HostileOptions): Promise<HostileResult> {
  const results: HostileShapeResult[] = [];
  let bodyBytes = options.bodyBytes;
  const shapeCount = hostileShapes(1024, options).length;
  for (let index = 0; index < shapeCount; index += 1) {
    const probe = await startProbe(peers);
    const client = createHttpClient(probe.ready.origin);
    try {
      // The JSON body limit the send path enforces for the relay's message limit.
      bodyBytes ??= jsonBodyLimit(probe.ready.maxMessageBytes);
      // A relay refusing early may reset the connection before the client reads its answer, as it may
      // with any client that is still sending: that is an answer too, and the stall is measured all the same.
      const post = (body: Buffer): Promise<HttpAnswer> =>
        client.post('/api/send', jsonHeaders, chunked(body)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') throw error;
          return { status: 0, body: { error: { code: `connection reset (${error.code})` } } };
        });
      // Warm: the first send signs in and connects, as a worker that has served before has.
      const warm = await post(
        Buffer.from(`{"from":"${sender}","to":"${benchRecipient}","subject":"Warm-up","text":"Hello."}`),
      );
      if (warm.status !== 200) throw new Error(`the warm-up send was answered ${warm.status}`);
      const { shape, body } = hostileShapes(bodyBytes, options)[index] ?? {
        shape: '',
        body: Buffer.alloc(0),
      };
      await probe.ask({ type: 'measure' }, 'measuring');
      const answer = await post(body);
      const stall = await probe.ask({ type: 'read' }, 'stall');
      results.push({
        shape,
        bodyBytes: body.length,
        status: answer.status,
        code: errorCode(answer.body),
        worstStallMs: round(Math.max(stall.worstDelayMs, stall.worstIntervalGapMs), 1),
        rssGrowthMb: megabytes(stall.rssGrowthBytes),
      });
      await probe.ask({ type: 'close' }, 'closed');
      await probe.exited;
    } finally {
      client.close();
      probe.stop();
    }
  }
  return {
    bodyBytes: bodyBytes ?? 0,
    shapes: results,
    worstStallMs: Math.max(...results.map((result) => result.worstStallMs)),
  };
}
