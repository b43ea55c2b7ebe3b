import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type JsonObject, readBody, sendJson, startHttpsServer } from './httpsServer.ts';
import { DEFAULT_TENANT_ID } from './identityPeer.ts';
import { sharedTestCertificate, type TestCertificate } from './testCertificate.ts';

/**
 * A loopback stand-in for an Azure Key Vault that the real SecretClient (@azure/keyvault-secrets) talks to.
 * It performs the bearer challenge (the SDK's first request carries no token), keeps every version of every
 * secret, soft-deletes like a vault with purge protection off (a deleted name cannot be set again until it is
 * recovered or purged, 409 ObjectIsDeletedButRecoverable), and answers in Key Vault's JSON shapes.
 * Create the client with `{ disableChallengeResourceVerification: true }`: the challenge names
 * https://vault.azure.net while the vault lives on localhost.
 */

export type KeyVaultOperation = 'get' | 'set' | 'list' | 'delete' | 'recover' | 'other';

export interface KeyVaultRequestRecord {
  method: string;
  /** The path without the query string, e.g. /secrets/smtp-token/. */
  path: string;
  operation: KeyVaultOperation;
  /** Whether it carried a bearer token; false for the first request, which the SDK sends to learn the challenge. */
  authenticated: boolean;
  /** The HTTP status the peer answered with. */
  status?: number;
}

export interface SecretVersion {
  version: string;
  /** `${vaultUrl}/secrets/${name}/${version}`. */
  id: string;
  value: string;
  tags: Record<string, string>;
  contentType?: string;
  enabled: boolean;
  expiresOn?: Date;
  notBefore?: Date;
  createdOn: Date;
  updatedOn: Date;
}

export interface DirectSecretOptions {
  tags?: Record<string, string>;
  contentType?: string;
  expiresOn?: Date;
  notBefore?: Date;
  enabled?: boolean;
}

export interface KeyVaultFailure {
  status: 429 | 503 | 500;
  /** Sent as Retry-After; 0 by default so the SDK retries at once and tests stay fast. */
  retryAfterSeconds?: number;
  /** How many consecutive authenticated requests fail this way; 1 by default. */
  times?: number;
}

export interface KeyVaultPeerOptions {
  /** Defaults to the process-wide sharedTestCertificate(), which the vitest setup file trusts. */
  certificate?: TestCertificate;
  /**
   * The authority named in the bearer challenge. The SDK passes its tenant to the credential's getToken, and
   * @azure/identity credentials refuse a tenant they were not configured for, so use the identity peer's.
   */
  authority?: string;
  /** Decides whether a bearer token is accepted; by default any non-empty token is. */
  authorize?: (accessToken: string) => boolean;
}

export interface KeyVaultPeer {
  /** `https://localhost:PORT`, the SecretClient's vaultUrl. */
  vaultUrl: string;
  requests: KeyVaultRequestRecord[];
  /** Requests of one kind that carried a bearer token, including those answered with a scripted failure. */
  countOperations(operation: KeyVaultOperation): number;
  /** The latest version's value, or undefined when the secret does not exist or is deleted. */
  secretValue(name: string): string | undefined;
  /** Every version, oldest first. */
  secretVersions(name: string): SecretVersion[];
  /** Stores a new version without going through HTTP, e.g. to seed the vault before a test. */
  putSecretDirect(name: string, value: string, options?: DirectSecretOptions): SecretVersion;
  failNext(failure: KeyVaultFailure): void;
  /**
   * From now on these operations are refused with 403 ForbiddenByRbac, as for an identity whose role lacks
   * them (e.g. 'Key Vault Secrets User' has no recover). An empty list grants everything again.
   */
  denyOperations(operations: KeyVaultOperation[]): void;
  /**
   * From now on a recovery is still under way for this many requests on the secret after the recover call:
   * a GET answers 404 and a PUT 409 ObjectIsBeingRecovered, as Key Vault does for some seconds. 0 by default.
   */
  lagRecoveries(requests: number): void;
  close(): Promise<void>;
}

const SECRET_NAME_PATTERN = /^[0-9a-zA-Z-]{1,127}$/;
const MAX_SECRET_VALUE_LENGTH = 25_600;
/** Key Vault pages lists by 25 and refuses a larger maxresults. */
const MAX_PAGE_SIZE = 25;
const RECOVERY_LEVEL = 'Recoverable+Purgeable';
const RECOVERABLE_DAYS = 90;
const VAULT_RESOURCE = 'https://vault.azure.net';

interface StoredSecret {
  versions: SecretVersion[];
  deletedOn?: Date;
  /** Set while a recovery is under way: how many more requests on the secret still see it deleted. */
  recoveryPendingRequests?: number;
}

interface SecretPutBody {
  value?: unknown;
  tags?: Record<string, string>;
  contentType?: string;
  attributes?: { enabled?: boolean; exp?: number; nbf?: number };
}

/**
 * An answer that ends the request early, in Key Vault's `{ error: { code, message, innererror? } }` shape;
 * the inner code is what tells apart, e.g., the kinds of 409 Conflict.
 */
class KeyVaultError extends Error {
  readonly status: number;
  readonly code: string;
  readonly innerCode: string | undefined;

  constructor(status: number, code: string, message: string, innerCode?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.innerCode = innerCode;
  }

  get body(): JsonObject {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.innerCode === undefined ? {} : { innererror: { code: this.innerCode } }),
      },
    };
  }
}

function epochSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

function newVersionId(): string {
  return randomBytes(16).toString('hex');
}

function secretNotFound(name: string): KeyVaultError {
  return new KeyVaultError(
    404,
    'SecretNotFound',
    `A secret with (name/id) ${name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
  );
}

/**
 * The route of a request with names and versions replaced by placeholders, e.g. `GET /secrets/{name}/{version}`.
 * The SDK asks for the latest version as GET /secrets/{name}/ (an empty version).
 */
function routeOf(method: string, segments: string[]): string {
  const [collection = '', name, detail, ...rest] = segments;
  const shape = [collection];
  if (name !== undefined) shape.push('{name}');
  if (detail !== undefined) shape.push(detail === 'versions' || detail === 'recover' ? detail : '{version}');
  if (rest.length > 0) shape.push('...');
  return `${method} /${shape.join('/')}`;
}

const OPERATION_BY_ROUTE: Record<string, KeyVaultOperation> = {
  'PUT /secrets/{name}': 'set',
  'GET /secrets/{name}': 'get',
  'GET /secrets/{name}/{version}': 'get',
  'GET /secrets': 'list',
  'GET /secrets/{name}/versions': 'list',
  'DELETE /secrets/{name}': 'delete',
  'POST /deletedsecrets/{name}/recover': 'recover',
  // The delete poller's GET /deletedsecrets/{name} and purges are 'other'.
};

/** The data action an RBAC refusal names, as in Key Vault's 403 message. */
const RBAC_ACTIONS: Record<KeyVaultOperation, string> = {
  get: 'Microsoft.KeyVault/vaults/secrets/getSecret/action',
  set: 'Microsoft.KeyVault/vaults/secrets/setSecret/action',
  list: 'Microsoft.KeyVault/vaults/secrets/readMetadata/action',
  delete: 'Microsoft.KeyVault/vaults/secrets/delete',
  recover: 'Microsoft.KeyVault/vaults/secrets/recover/action',
  other: 'Microsoft.KeyVault/vaults/secrets/purge/action',
};

function forbiddenByRbac(operation: KeyVaultOperation, path: string): KeyVaultError {
  return new KeyVaultError(
    403,
    'Forbidden',
    `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nAction: '${RBAC_ACTIONS[operation]}'\r\nResource: '${path}'\r\nAssignment: (not found)\r\n`,
    'ForbiddenByRbac',
  );
}

const FAILURE_CODES: Record<KeyVaultFailure['status'], string> = {
  429: 'Throttled',
  503: 'ServiceUnavailable',
  500: 'InternalServerError',
};

export async function startKeyVaultPeer(options: KeyVaultPeerOptions = {}): Promise<KeyVaultPeer> {
  const certificate = options.certificate ?? (await sharedTestCertificate());
  const authority = options.authority ?? `https://login.microsoftonline.com/${DEFAULT_TENANT_ID}`;
  const authorize = options.authorize ?? ((accessToken: string) => accessToken.length > 0);

  const secrets = new Map<string, StoredSecret>();
  const requests: KeyVaultRequestRecord[] = [];
  const failures: KeyVaultFailure[] = [];
  const deniedOperations = new Set<KeyVaultOperation>();
  let recoveryLagRequests = 0;
  let vaultUrl = '';

  const challengeHeader = {
    'www-authenticate': `Bearer authorization="${authority}", resource="${VAULT_RESOURCE}"`,
  };

  function liveSecret(name: string): StoredSecret | undefined {
    const secret = secrets.get(name);
    return secret && !secret.deletedOn ? secret : undefined;
  }

  function attributesOf(version: SecretVersion): JsonObject {
    return {
      enabled: version.enabled,
      ...(version.notBefore ? { nbf: epochSeconds(version.notBefore) } : {}),
      ...(version.expiresOn ? { exp: epochSeconds(version.expiresOn) } : {}),
      created: epochSeconds(version.createdOn),
      updated: epochSeconds(version.updatedOn),
      recoveryLevel: RECOVERY_LEVEL,
      recoverableDays: RECOVERABLE_DAYS,
    };
  }

  function secretBundle(version: SecretVersion): JsonObject {
    return {
      value: version.value,
      id: version.id,
      ...(version.contentType !== undefined ? { contentType: version.contentType } : {}),
      attributes: attributesOf(version),
      tags: version.tags,
    };
  }

  /** A list item: no value, and for the secrets list an id without version, as Key Vault does. */
  function secretItem(version: SecretVersion, id: string): JsonObject {
    return {
      id,
      ...(version.contentType !== undefined ? { contentType: version.contentType } : {}),
      attributes: attributesOf(version),
      tags: version.tags,
    };
  }

  function deletedBundle(name: string, secret: StoredSecret): JsonObject {
    const latest = secret.versions.at(-1);
    const deletedOn = secret.deletedOn ?? new Date();
    return {
      ...(latest ? secretBundle(latest) : {}),
      recoveryId: `${vaultUrl}/deletedsecrets/${name}`,
      deletedDate: epochSeconds(deletedOn),
      scheduledPurgeDate: epochSeconds(deletedOn) + RECOVERABLE_DAYS * 24 * 3600,
    };
  }

  function addVersion(name: string, value: string, details: DirectSecretOptions): SecretVersion {
    const existing = secrets.get(name);
    if (existing?.recoveryPendingRequests !== undefined) {
      throw new KeyVaultError(
        409,
        'Conflict',
        `Secret ${name} is currently being recovered and cannot be re-created; retry later.`,
        'ObjectIsBeingRecovered',
      );
    }
    if (existing?.deletedOn) {
      throw new KeyVaultError(
        409,
        'Conflict',
        `Secret ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.`,
        'ObjectIsDeletedButRecoverable',
      );
    }
    const now = new Date();
    const version = newVersionId();
    const stored: SecretVersion = {
      version,
      id: `${vaultUrl}/secrets/${name}/${version}`,
      value,
      tags: details.tags ?? {},
      enabled: details.enabled ?? true,
      createdOn: now,
      updatedOn: now,
      ...(details.contentType !== undefined ? { contentType: details.contentType } : {}),
      ...(details.expiresOn ? { expiresOn: details.expiresOn } : {}),
      ...(details.notBefore ? { notBefore: details.notBefore } : {}),
    };
    const secret = existing ?? { versions: [] };
    secret.versions.push(stored);
    secrets.set(name, secret);
    return stored;
  }

  function requireValidName(name: string): void {
    if (!SECRET_NAME_PATTERN.test(name)) {
      throw new KeyVaultError(400, 'BadParameter', `The request URI contains an invalid name: ${name}`);
    }
  }

  function parsePutBody(body: string): SecretPutBody {
    try {
      const parsed: unknown = JSON.parse(body);
      if (typeof parsed === 'object' && parsed !== null) return parsed as SecretPutBody;
    } catch {
      // Fall through to Key Vault's answer for an unreadable body.
    }
    throw new KeyVaultError(400, 'BadParameter', 'The request body is not valid JSON.');
  }

  function setSecret(name: string, body: string): JsonObject {
    requireValidName(name);
    const put = parsePutBody(body);
    if (typeof put.value !== 'string') {
      throw new KeyVaultError(400, 'BadParameter', 'Property value is required.');
    }
    if (put.value.length > MAX_SECRET_VALUE_LENGTH) {
      // The text users report from the service for an oversized value.
      throw new KeyVaultError(400, 'BadParameter', 'Property value has invalid value');
    }
    const { attributes = {} } = put;
    const stored = addVersion(name, put.value, {
      ...(put.tags ? { tags: put.tags } : {}),
      ...(put.contentType !== undefined ? { contentType: put.contentType } : {}),
      ...(attributes.enabled !== undefined ? { enabled: attributes.enabled } : {}),
      ...(attributes.exp !== undefined ? { expiresOn: new Date(attributes.exp * 1000) } : {}),
      ...(attributes.nbf !== undefined ? { notBefore: new Date(attributes.nbf * 1000) } : {}),
    });
    return secretBundle(stored);
  }

  function getSecret(name: string, versionId: string | undefined): JsonObject {
    const secret = liveSecret(name);
    const version = versionId
      ? secret?.versions.find((candidate) => candidate.version === versionId)
      : secret?.versions.at(-1);
    if (!version) {
      throw secretNotFound(versionId ? `${name}/${versionId}` : name);
    }
    if (!version.enabled) {
      throw new KeyVaultError(403, 'Forbidden', 'Operation get is not allowed on a disabled secret.');
    }
    return secretBundle(version);
  }

  /** Key Vault pages with an opaque $skiptoken inside nextLink; here it is simply the offset. */
  function page(items: JsonObject[], url: URL): JsonObject {
    const requested = url.searchParams.get('maxresults');
    const pageSize = requested === null ? MAX_PAGE_SIZE : Number(requested);
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
      throw new KeyVaultError(
        400,
        'BadParameter',
        `The value '${requested}' of maxresults is not valid. It must be between 1 and ${MAX_PAGE_SIZE}.`,
      );
    }
    const offset = Number(url.searchParams.get('$skiptoken') ?? '0');
    const next = new URL(url);
    next.searchParams.set('$skiptoken', String(offset + pageSize));
    next.searchParams.set('maxresults', String(pageSize));
    return {
      value: items.slice(offset, offset + pageSize),
      nextLink: offset + pageSize < items.length ? `${vaultUrl}${next.pathname}${next.search}` : null,
    };
  }

  function listSecrets(url: URL): JsonObject {
    const items = [...secrets.entries()].flatMap(([name, secret]) => {
      const latest = secret.deletedOn ? undefined : secret.versions.at(-1);
      return latest ? [secretItem(latest, `${vaultUrl}/secrets/${name}`)] : [];
    });
    return page(items, url);
  }

  function listVersions(name: string, url: URL): JsonObject {
    const secret = liveSecret(name);
    if (!secret) {
      throw secretNotFound(name);
    }
    return page(
      secret.versions.map((version) => secretItem(version, version.id)),
      url,
    );
  }

  function deleteSecret(name: string): JsonObject {
    const secret = liveSecret(name);
    if (!secret) {
      throw secretNotFound(name);
    }
    secret.deletedOn = new Date();
    return deletedBundle(name, secret);
  }

  function deletedSecret(name: string): StoredSecret {
    const secret = secrets.get(name);
    if (!secret?.deletedOn) {
      throw new KeyVaultError(404, 'SecretNotFound', `Deleted Secret not found: ${name}`);
    }
    return secret;
  }

  /** Key Vault answers the recover call at once with the secret's bundle (no value) and finishes later. */
  function recoverSecret(name: string): JsonObject {
    const secret = deletedSecret(name);
    if (recoveryLagRequests === 0) delete secret.deletedOn;
    else secret.recoveryPendingRequests ??= recoveryLagRequests;
    const latest = secret.versions.at(-1);
    if (!latest) return {};
    const { value: _value, ...bundle } = secretBundle(latest);
    return { ...bundle, id: `${vaultUrl}/secrets/${name}` };
  }

  function advanceRecovery(secret: StoredSecret): void {
    if (secret.recoveryPendingRequests === undefined) return;
    if (secret.recoveryPendingRequests > 0) {
      secret.recoveryPendingRequests -= 1;
      return;
    }
    delete secret.recoveryPendingRequests;
    delete secret.deletedOn;
  }

  async function respond(
    route: string,
    segments: string[],
    url: URL,
    request: IncomingMessage,
  ): Promise<[number, unknown]> {
    const name = segments[1] ?? '';
    const version = segments[2] || undefined;
    const addressed = segments[0] === 'secrets' ? secrets.get(name) : undefined;
    if (addressed) advanceRecovery(addressed);
    switch (route) {
      case 'PUT /secrets/{name}':
        return [200, setSecret(name, await readBody(request))];
      case 'GET /secrets/{name}':
      case 'GET /secrets/{name}/{version}':
        return [200, getSecret(name, version)];
      case 'GET /secrets':
        return [200, listSecrets(url)];
      case 'GET /secrets/{name}/versions':
        return [200, listVersions(name, url)];
      case 'DELETE /secrets/{name}':
        return [200, deleteSecret(name)];
      case 'GET /deletedsecrets/{name}':
        return [200, deletedBundle(name, deletedSecret(name))];
      case 'POST /deletedsecrets/{name}/recover':
        return [200, recoverSecret(name)];
      case 'DELETE /deletedsecrets/{name}':
        deletedSecret(name);
        secrets.delete(name);
        return [204, undefined];
      default:
        throw new KeyVaultError(400, 'BadParameter', `The key vault peer does not implement ${route}`);
    }
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const method = request.method ?? 'GET';
    const url = new URL(request.url ?? '/', vaultUrl);
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const route = routeOf(method, segments);
    const authorization = request.headers.authorization ?? '';
    const bearerToken = /^Bearer (.+)$/i.exec(authorization)?.[1] ?? '';
    const record: KeyVaultRequestRecord = {
      method,
      path: url.pathname,
      operation: OPERATION_BY_ROUTE[route] ?? 'other',
      authenticated: bearerToken !== '',
    };
    requests.push(record);

    const answer = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      record.status = status;
      if (body === undefined) {
        response.writeHead(status, headers);
        response.end();
        return;
      }
      sendJson(response, status, body, headers);
    };

    if (!record.authenticated || !authorize(bearerToken)) {
      // The SDK sends its first request without a token (and a PUT without its body) to read this challenge.
      request.resume();
      const message = record.authenticated
        ? 'AKV10032: Invalid issuer.'
        : 'AKV10000: Request is missing a Bearer or PoP token.';
      answer(401, { error: { code: 'Unauthorized', message } }, challengeHeader);
      return;
    }

    if (deniedOperations.has(record.operation)) {
      request.resume();
      answer(403, forbiddenByRbac(record.operation, url.pathname).body);
      return;
    }

    const failure = failures.shift();
    if (failure) {
      request.resume();
      const retryAfter = String(failure.retryAfterSeconds ?? 0);
      const error = {
        code: FAILURE_CODES[failure.status],
        message: `Scripted ${failure.status} from the key vault peer.`,
      };
      answer(failure.status, { error }, { 'retry-after': retryAfter });
      return;
    }

    try {
      const [status, body] = await respond(route, segments, url, request);
      answer(status, body);
    } catch (error) {
      if (error instanceof KeyVaultError) {
        answer(error.status, error.body);
        return;
      }
      throw error;
    }
  }

  const server = await startHttpsServer(certificate, handle);
  vaultUrl = server.origin;

  return {
    vaultUrl,
    requests,

    countOperations(operation) {
      return requests.filter((request) => request.authenticated && request.operation === operation).length;
    },

    secretValue(name) {
      return liveSecret(name)?.versions.at(-1)?.value;
    },

    secretVersions(name) {
      return [...(secrets.get(name)?.versions ?? [])];
    },

    putSecretDirect(name, value, details = {}) {
      requireValidName(name);
      return addVersion(name, value, details);
    },

    failNext(failure) {
      for (let i = 0; i < (failure.times ?? 1); i += 1) {
        failures.push(failure);
      }
    },

    denyOperations(operations) {
      deniedOperations.clear();
      for (const operation of operations) deniedOperations.add(operation);
    },

    lagRecoveries(requests) {
      recoveryLagRequests = requests;
    },

    close: () => server.close(),
  };
}
