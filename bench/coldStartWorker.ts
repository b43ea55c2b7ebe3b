import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import Module from 'node:module';

/**
 * A stand-in for the Azure Functions Node.js worker, for loading a built function app (dist/) exactly as the
 * worker does and invoking its HTTP functions: it answers `require('@azure/functions-core')` with its own
 * core API (as the worker does, by intercepting Module.prototype.require), records every registration, and
 * invokes a function through the app's own programming model (@azure/functions, bundled into the app): the
 * RPC-shaped invocation, and in HTTP streaming mode the request proxied over HTTP to the model's proxy
 * server. Nothing of the app is bypassed, so what answers here is what answers in Azure.
 * Used by the cold start probe (bench/coldStartProbe.ts) and the bundle's tests (test/build/).
 */
export interface FunctionBinding {
  type: string;
  direction: 'in' | 'out';
  route?: string;
  methods?: string[];
  authLevel?: string;
  schedule?: string;
  queueName?: string;
  [property: string]: unknown;
}

export interface RegisteredFunction {
  name: string;
  bindings: Record<string, FunctionBinding>;
  handler: (...args: unknown[]) => unknown;
}

export interface HttpInvocation {
  method: string;
  /** Path and query, e.g. `/api/send`. */
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(
    context: unknown,
    inputs: unknown[],
    handler: RegisteredFunction['handler'],
  ): Promise<unknown>;
  getResponse(
    context: unknown,
    result: unknown,
  ): Promise<{ returnValue?: { http?: RpcHttpResponse } } | undefined>;
}

interface ProgrammingModel {
  getInvocationModel(coreContext: unknown): InvocationModel;
  getCapabilities(capabilities: Record<string, string>): Promise<Record<string, string>>;
}

interface RpcHttpResponse {
  statusCode?: string;
  headers?: Record<string, string>;
  body?: { bytes?: Uint8Array; string?: string };
}

export interface WorkerStandIn {
  functions: Map<string, RegisteredFunction>;
  /** Imports the app's files (as the worker does with package.json `main`) and starts the model. */
  load(files: URL[]): Promise<void>;
  invokeHttp(name: string, invocation: HttpInvocation): Promise<HttpAnswer>;
}

const origin = 'http://localhost:7071';

export function installWorkerStandIn(): WorkerStandIn {
  const functions = new Map<string, RegisteredFunction>();
  let model: ProgrammingModel | undefined;
  let proxyUri: string | undefined;
  const disposable = { dispose() {} };
  const coreApi = {
    version: '3.10.1',
    setProgrammingModel(programmingModel: ProgrammingModel) {
      model = programmingModel;
    },
    getProgrammingModel: () => model,
    registerFunction(metadata: Omit<RegisteredFunction, 'handler'>, handler: RegisteredFunction['handler']) {
      functions.set(metadata.name, { name: metadata.name, bindings: metadata.bindings, handler });
      return disposable;
    },
    registerHook: () => disposable,
    log() {},
    Disposable: class {
      dispose() {}
    },
  };
  const prototype = Module.prototype as unknown as { require: (id: string) => unknown };
  const original = prototype.require;
  prototype.require = function require(this: unknown, id: string) {
    return id === '@azure/functions-core' ? coreApi : original.call(this, id);
  };

  async function load(files: URL[]): Promise<void> {
    for (const file of files) await import(file.href);
    if (model === undefined)
      throw new Error('the app set no programming model (is @azure/functions bundled?)');
    // The worker asks for the capabilities once the app is loaded; in streaming mode this starts the proxy.
    proxyUri = (await model.getCapabilities({})).HttpUri;
  }

  async function invokeHttp(name: string, invocation: HttpInvocation): Promise<HttpAnswer> {
    const registered = functions.get(name);
    if (registered === undefined || model === undefined) throw new Error(`no function ${name} registered`);
    const [triggerName = ''] = Object.entries(registered.bindings).find(
      ([, binding]) => binding.type === 'httpTrigger',
    ) ?? [''];
    const invocationId = randomUUID();
    const headers = { ...invocation.headers };
    const rpcHttp = {
      method: invocation.method,
      url: new URL(invocation.path, origin).toString(),
      headers,
      ...(proxyUri === undefined ? { body: { string: invocation.body ?? '' } } : {}),
    };
    const invocationModel = model.getInvocationModel({
      invocationId,
      metadata: { name, bindings: registered.bindings },
      request: {
        inputData: [{ name: triggerName, data: { http: rpcHttp } }],
        triggerMetadata: { Headers: { json: JSON.stringify(headers) } },
      },
      log() {},
    });
    const proxied = proxyUri === undefined ? undefined : sendToProxy(proxyUri, invocationId, invocation);
    const { context, inputs } = await invocationModel.getArguments();
    const result = await invocationModel.invokeFunction(context, inputs, registered.handler);
    const response = await invocationModel.getResponse(context, result);
    if (proxied !== undefined) return proxied;
    const http = response?.returnValue?.http ?? {};
    const bytes = http.body?.bytes;
    return {
      status: Number(http.statusCode ?? 200),
      headers: http.headers ?? {},
      body: bytes === undefined ? (http.body?.string ?? '') : Buffer.from(bytes).toString('utf8'),
    };
  }

  return { functions, load, invokeHttp };
}

/** The host's half of streaming mode: the request goes to the worker's proxy, tagged with the invocation. */
function sendToProxy(
  proxyUri: string,
  invocationId: string,
  invocation: HttpInvocation,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(invocation.path, proxyUri);
    const outgoing = httpRequest(
      target,
      {
        method: invocation.method,
        headers: {
          ...invocation.headers,
          'x-ms-invocation-id': invocationId,
          'x-forwarded-host': new URL(origin).host,
          'x-forwarded-proto': 'http',
        },
      },
      (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('error', reject);
        incoming.on('end', () => {
          const headers: Record<string, string> = {};
          for (const [key, value] of Object.entries(incoming.headers))
            if (typeof value === 'string') headers[key] = value;
          resolve({
            status: incoming.statusCode ?? 0,
            headers,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(invocation.body);
  });
}
