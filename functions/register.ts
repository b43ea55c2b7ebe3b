import {
  app,
  type HttpRequest,
  type HttpResponseInit,
  type InvocationContext,
  type Timer,
} from '@azure/functions';
import {
  httpRoutes,
  type QueueFunctionName,
  queueFunctions,
  type RouteName,
  type TimerName,
  timerFunctions,
} from '../shared/api/routes.ts';
import { type Runtime, runtimeFromEnvironment, timerScheduleFromEnvironment } from '../shared/runtime.ts';
import { type RelayHttpHandler, withErrors } from './httpEdge.ts';

/**
 * Registration made from the function table (shared/api/routes.ts): a file in functions/ exports its
 * handler by name and registers it with `registerHttp('send', send)`; name, route, method, auth level,
 * schedule and queue come from the table. Handlers receive the relay's runtime as an argument, so the
 * same handler runs under the Functions host (the runtime built from app settings), the development host
 * (devhost/) and the tests (a runtime wired to loopback peers). Every registration is also kept in
 * `functionApp`, which is what the development host serves.
 */
export type RuntimeSource = () => Promise<Runtime>;

// HTTP streaming mode (host 4.28+): a request body reaches the handler as a stream from the host instead of
// as one buffer, so a raw MIME message goes to SMTP as it arrives (functions/send.ts). Every JSON route
// reads request.body as a stream already (shared/api/requestBody.ts). Set before any registration; the
// library refuses a change only once the worker has started, and every entry point sets the same value.
app.setup({ enableHttpStream: true });

/** What a function of this app is: its trigger's input, the relay's runtime and the invocation. */
export type RelayFunction<Input, Output> = (
  input: Input,
  runtime: Runtime,
  context: InvocationContext,
) => Promise<Output>;

export type RelayHttpFunction = RelayFunction<HttpRequest, HttpResponseInit>;
export type RelayTimerFunction = RelayFunction<Timer, unknown>;
export type RelayQueueFunction = RelayFunction<unknown, void>;

/** An HTTP function as any host invokes it: the request, where to get the runtime, the invocation. */
export type HostedHttpFunction = (
  request: HttpRequest,
  runtime: RuntimeSource,
  context: InvocationContext,
) => Promise<HttpResponseInit>;

export interface FunctionApp {
  http: Map<RouteName, HostedHttpFunction>;
  /** Each timer with the schedule it was registered with (from the settings, as the Functions host has it). */
  timers: Map<TimerName, { handler: RelayTimerFunction; schedule: string }>;
  queues: Map<QueueFunctionName, RelayQueueFunction>;
}

export const functionApp: FunctionApp = { http: new Map(), timers: new Map(), queues: new Map() };

/** How a failure to even build the runtime (a bad setting) is answered; a JSON error body unless given. */
export type RuntimeErrorResponse = (error: unknown, context: InvocationContext) => HttpResponseInit;

export function withRuntime(
  handler: RelayHttpFunction,
  onRuntimeError?: RuntimeErrorResponse,
): HostedHttpFunction {
  return async (request, runtime, context) => {
    let relayRuntime: Runtime;
    try {
      relayRuntime = await runtime();
    } catch (error) {
      if (onRuntimeError === undefined) throw error;
      return onRuntimeError(error, context);
    }
    return handler(request, relayRuntime, context);
  };
}

/** An HTTP function as a host calls it, RelayErrors answered as JSON. */
export function httpHandler(hosted: HostedHttpFunction, runtime: RuntimeSource): RelayHttpHandler {
  return withErrors((request, context) => hosted(request, runtime, context));
}

function sourceOf(runtime: Runtime | RuntimeSource): RuntimeSource {
  return typeof runtime === 'function' ? runtime : async () => runtime;
}

/** For tests and tools: a handler bound to a runtime, answering exactly as it does under a host. */
export function bindHttp(handler: RelayHttpFunction, runtime: Runtime | RuntimeSource): RelayHttpHandler {
  return httpHandler(withRuntime(handler), sourceOf(runtime));
}

/** A timer or queue function as a host calls it: the runtime fetched per invocation. */
export function triggerHandler<Input, Output>(
  handler: RelayFunction<Input, Output>,
  runtime: Runtime | RuntimeSource,
): (input: Input, context: InvocationContext) => Promise<Output> {
  const source = sourceOf(runtime);
  return async (input, context) => handler(input, await source(), context);
}

function hostHttp(name: RouteName, hosted: HostedHttpFunction): void {
  functionApp.http.set(name, hosted);
  const { route, method, authLevel } = httpRoutes[name];
  app.http(name, {
    route,
    methods: [method],
    authLevel,
    handler: httpHandler(hosted, runtimeFromEnvironment),
  });
}

export function registerHttp(
  name: RouteName,
  handler: RelayHttpFunction,
  options: { onRuntimeError?: RuntimeErrorResponse } = {},
): void {
  hostHttp(name, withRuntime(handler, options.onRuntimeError));
}

/** An HTTP function that needs no runtime answers even while a setting is wrong. */
export function registerRuntimeFreeHttp(
  name: RouteName,
  handler: (request: HttpRequest) => Promise<HttpResponseInit>,
): void {
  hostHttp(name, (request) => handler(request));
}

export function registerTimer(name: TimerName, handler: RelayTimerFunction): void {
  const schedule = timerScheduleFromEnvironment(timerFunctions[name].schedule);
  functionApp.timers.set(name, { handler, schedule });
  app.timer(name, { schedule, handler: triggerHandler(handler, runtimeFromEnvironment) });
}

export function registerQueue(name: QueueFunctionName, handler: RelayQueueFunction): void {
  functionApp.queues.set(name, handler);
  const { queueName, connection } = queueFunctions[name];
  app.storageQueue(name, { queueName, connection, handler: triggerHandler(handler, runtimeFromEnvironment) });
}
