import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import functions, { type Cookie, type InvocationContext, type Timer } from '@azure/functions';
import { Cron } from 'croner';
import type { RelayHttpHandler } from '../functions/httpEdge.ts';
import { type FunctionApp, httpHandler, type RuntimeSource, triggerHandler } from '../functions/register.ts';
import { type HostSettings, hostSettings, prefixedPath } from '../shared/api/hostJson.ts';
import { httpRoutes, queueFunctions, type RouteName } from '../shared/api/routes.ts';
import { poisonQueueOf } from '../shared/storage/relayStorage.ts';
import { createQueueListener, type QueueListener } from './queueListener.ts';

// @azure/functions is CommonJS, and Node's named-export detection misses its classes.
const { HttpRequest, HttpResponse, InvocationContext: Invocation } = functions;

/**
 * A small stand-in for the Functions host, for `npm start` where Core Tools is not installed and for the
 * tests: it serves the registrations in `functionApp` and nothing else. HTTP routes from the route table
 * below host.json's routePrefix; timers on their NCRONTAB schedules (six fields, seconds first, UTC as in
 * Azure); queue triggers with host.json's queue settings (devhost/queueListener.ts). Like `func start`, it
 * does not check function or admin keys.
 */
export interface DevHostOptions {
  functionApp: FunctionApp;
  runtime: RuntimeSource;
  /** 7071, as `func start`; 0 picks a free port. */
  port?: number;
  hostname?: string;
  settings?: HostSettings;
  /** Run timers and queue listeners too (HTTP only when false). */
  triggers?: boolean;
  /** Where log lines go: every line a function logs, and the host's own. */
  log?: (line: string) => void;
}

export interface DevHost {
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** Each queue function's listener, by function name. */
  queueListeners: Map<string, QueueListener>;
  close(): Promise<void>;
}

interface CompiledRoute {
  name: RouteName;
  method: string;
  pattern: RegExp;
  parameterNames: string[];
  handle: RelayHttpHandler;
}

/** A Functions route template (`send/{id}`, `{id:guid}`, `{id?}`, `{*rest}`) as a regular expression. */
function compileRoute(name: RouteName, routePrefix: string, handle: RelayHttpHandler): CompiledRoute {
  const { route, method } = httpRoutes[name];
  const parameterNames: string[] = [];
  const escaped = prefixedPath(route, routePrefix)
    .split(/(\{[^}]+\})/)
    .map((part) => {
      const parameter = /^\{(\*?)([A-Za-z0-9_]+)(?::[^}?]*)?(\??)\}$/.exec(part);
      if (parameter === null) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      parameterNames.push(parameter[2] ?? '');
      const value = parameter[1] === '*' ? '(.*)' : '([^/]+)';
      return parameter[3] === '?' ? `${value}?` : value;
    })
    .join('');
  return { name, method, pattern: new RegExp(`^${escaped}/?$`, 'i'), parameterNames, handle };
}

function serializeCookie(cookie: Cookie): string {
  return [
    `${cookie.name}=${cookie.value}`,
    ...(cookie.path === undefined ? [] : [`Path=${cookie.path}`]),
    ...(cookie.maxAge === undefined ? [] : [`Max-Age=${cookie.maxAge}`]),
    ...(cookie.httpOnly ? ['HttpOnly'] : []),
    ...(cookie.secure ? ['Secure'] : []),
    ...(cookie.sameSite === undefined ? [] : [`SameSite=${cookie.sameSite}`]),
  ].join('; ');
}

/**
 * The request as the Functions host hands it over in HTTP streaming mode (functions/register.ts): a web
 * Request whose body streams from the connection, as @azure/functions' createStreamRequest builds it
 * (node_modules/@azure/functions/src/http/HttpRequest.ts), so a handler reads the body while it arrives.
 * GET and HEAD carry none (the Request constructor refuses one).
 */
function streamedRequest(
  incoming: IncomingMessage,
  url: URL,
  headers: Record<string, string>,
  params: Record<string, string>,
): InstanceType<typeof HttpRequest> {
  const method = incoming.method ?? 'GET';
  const bodyless = method === 'GET' || method === 'HEAD';
  if (bodyless) incoming.resume();
  const nativeRequest = new Request(url, {
    method,
    headers,
    ...(bodyless ? {} : { body: Readable.toWeb(incoming) as ReadableStream<Uint8Array>, duplex: 'half' }),
  } as RequestInit);
  // `nativeRequest` is the library's internal init, the one its stream mode uses; not in its public types.
  return new HttpRequest({ nativeRequest, params } as unknown as ConstructorParameters<
    typeof HttpRequest
  >[0]);
}

function contextFor(functionName: string, log: DevHostOptions['log'], invocation: number): InvocationContext {
  return new Invocation({
    invocationId: `${functionName}-${invocation}`,
    functionName,
    logHandler: (level, ...args) => log?.(`${level}: [${functionName}] ${args.map(String).join(' ')}`),
  });
}

export async function startDevHost(options: DevHostOptions): Promise<DevHost> {
  const settings = options.settings ?? hostSettings();
  const log = options.log;
  const routes = [...options.functionApp.http].map(([name, hosted]) =>
    compileRoute(name, settings.routePrefix, httpHandler(hosted, options.runtime)),
  );
  let invocations = 0;

  async function serve(incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
    const url = new URL(incoming.url ?? '/', origin);
    const pathname = decodeURIComponent(url.pathname);
    const candidates = routes.filter((route) => route.pattern.test(pathname));
    const route = candidates.find((candidate) => candidate.method === incoming.method);
    if (route === undefined) {
      outgoing.writeHead(candidates.length === 0 ? 404 : 405).end();
      return;
    }
    const match = route.pattern.exec(pathname) ?? [];
    const params = Object.fromEntries(
      route.parameterNames.flatMap((name, index) => {
        const value = match[index + 1];
        return value === undefined || value === '' ? [] : [[name, value]];
      }),
    );
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const request = streamedRequest(incoming, url, headers, params);
    invocations += 1;
    const response = new HttpResponse(await route.handle(request, contextFor(route.name, log, invocations)));
    const raw: Record<string, string | string[]> = Object.fromEntries(response.headers.entries());
    const cookies = response.cookies.map(serializeCookie);
    if (cookies.length > 0) raw['set-cookie'] = cookies;
    outgoing.writeHead(response.status, raw);
    if (response.body === null) {
      outgoing.end();
      return;
    }
    Readable.fromWeb(response.body as WebReadableStream<Uint8Array>).pipe(outgoing);
  }

  const server = http.createServer((incoming, outgoing) => {
    serve(incoming, outgoing).catch((error: unknown) => {
      log?.(`error: host failed to serve ${incoming.method} ${incoming.url}: ${String(error)}`);
      if (!outgoing.headersSent) outgoing.writeHead(500);
      outgoing.end();
    });
  });
  server.listen(options.port ?? 7071, options.hostname ?? '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://${options.hostname ?? '127.0.0.1'}:${(server.address() as AddressInfo).port}`;

  const timers: Cron[] = [];
  const queueListeners = new Map<string, QueueListener>();
  const listening: Promise<void>[] = [];
  let stopping = false;
  if (options.triggers ?? true) {
    for (const [name, { handler, schedule }] of options.functionApp.timers) {
      const invoke = triggerHandler(handler, options.runtime);
      let last = new Date();
      const job = new Cron(schedule, { mode: '6-part', timezone: 'UTC', protect: true }, async () => {
        invocations += 1;
        const now = new Date();
        const timer: Timer = {
          isPastDue: false,
          schedule: { adjustForDST: false },
          scheduleStatus: {
            last: last.toISOString(),
            next: job.nextRun()?.toISOString() ?? '',
            lastUpdated: now.toISOString(),
          },
        };
        last = now;
        try {
          await invoke(timer, contextFor(name, log, invocations));
        } catch (error) {
          log?.(`error: [${name}] failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      });
      timers.push(job);
      log?.(`${name}: timer ${schedule}, next run ${job.nextRun()?.toISOString() ?? 'never'}`);
    }
    for (const [name, handler] of options.functionApp.queues) {
      // The queue trigger's connection names the relay's own storage setting: its clients are the relay's.
      const storage = await options.runtime().then(
        (runtime) => runtime.storage,
        (error: unknown) => {
          log?.(
            `warning: [${name}] not listening: ${error instanceof Error ? error.message : 'the relay cannot start'}`,
          );
          return undefined;
        },
      );
      if (storage === undefined) continue;
      const { queueName } = queueFunctions[name];
      const listener = createQueueListener({
        functionName: name,
        queue: storage.queue(queueName),
        poisonQueue: storage.queue(poisonQueueOf(queueName)),
        handler: triggerHandler(handler, options.runtime),
        settings: settings.queues,
        ...(log === undefined ? {} : { log }),
      });
      queueListeners.set(name, listener);
      listening.push(
        listener
          .runUntil(() => stopping, Number.POSITIVE_INFINITY)
          .catch((error: unknown) => {
            log?.(`error: [${name}] queue listener stopped: ${String(error)}`);
          }),
      );
      log?.(`${name}: queue ${queueName}`);
    }
  }

  return {
    origin,
    queueListeners,
    async close() {
      stopping = true;
      for (const job of timers) job.stop();
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await Promise.all([closed, ...listening]);
    },
  };
}
