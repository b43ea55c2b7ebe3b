import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The parts of host.json that the app's own code must agree with: the HTTP route prefix (the OpenAPI
 * document and the development host follow it) and the queue trigger's settings (the queued-send
 * processor needs maxDequeueCount; the development host plays the whole listener). host.json is the one
 * place these are set; this reads it, applying the Functions host's documented defaults.
 */
export interface HostQueueSettings {
  batchSize: number;
  newBatchThreshold: number;
  maxDequeueCount: number;
  visibilityTimeoutSeconds: number;
  maxPollingIntervalSeconds: number;
  messageEncoding: 'base64' | 'none';
}

export interface HostSettings {
  /** `api` unless host.json's extensions.http.routePrefix says otherwise (`""` puts routes at the root). */
  routePrefix: string;
  queues: HostQueueSettings;
}

interface HostJson {
  extensions?: {
    http?: { routePrefix?: string };
    queues?: {
      batchSize?: number;
      newBatchThreshold?: number;
      maxDequeueCount?: number;
      visibilityTimeout?: string;
      maxPollingInterval?: string;
      messageEncoding?: string;
    };
  };
}

/** `hh:mm:ss` (a .NET TimeSpan as host.json writes it) in seconds. */
function timeSpanSeconds(value: string): number {
  const [hours, minutes, seconds] = value.split(':').map(Number);
  return (hours ?? 0) * 3600 + (minutes ?? 0) * 60 + (seconds ?? 0);
}

export function parseHostJson(text: string): HostSettings {
  const host = JSON.parse(text) as HostJson;
  const queues = host.extensions?.queues ?? {};
  // Defaults from Microsoft Learn, "Azure Queue storage trigger", host.json settings.
  const batchSize = queues.batchSize ?? 16;
  return {
    routePrefix: (host.extensions?.http?.routePrefix ?? 'api').replace(/^\/+|\/+$/g, ''),
    queues: {
      batchSize,
      newBatchThreshold: queues.newBatchThreshold ?? Math.floor(batchSize / 2),
      maxDequeueCount: queues.maxDequeueCount ?? 5,
      visibilityTimeoutSeconds: timeSpanSeconds(queues.visibilityTimeout ?? '00:00:00'),
      maxPollingIntervalSeconds: timeSpanSeconds(queues.maxPollingInterval ?? '00:01:00'),
      messageEncoding: queues.messageEncoding === 'none' ? 'none' : 'base64',
    },
  };
}

/** The function app's root, where host.json is: the nearest one above this file, from the sources and dist/ alike. */
export function appRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, 'host.json'))) {
    const parent = dirname(directory);
    if (parent === directory) throw new Error('host.json not found above shared/api');
    directory = parent;
  }
  return directory;
}

let hostSettingsOnce: HostSettings | undefined;

export function hostSettings(): HostSettings {
  hostSettingsOnce ??= parseHostJson(readFileSync(join(appRoot(), 'host.json'), 'utf8'));
  return hostSettingsOnce;
}

/** `send/{id}` -> `/api/send/{id}` (or `/send/{id}` with an empty prefix). */
export function prefixedPath(route: string, routePrefix = hostSettings().routePrefix): string {
  return `/${[routePrefix, route].filter((part) => part !== '').join('/')}`;
}
