import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendJson } from './httpsServer.ts';
import { signJwt } from './jwt.ts';

/**
 * A loopback stand-in for App Service's managed-identity endpoint (the one IDENTITY_ENDPOINT and
 * IDENTITY_HEADER point at inside a Function App): `GET ?api-version=2019-08-01&resource=...&client_id=...`
 * with the `X-IDENTITY-HEADER` secret, answering `{ access_token, expires_on, resource, token_type }`.
 * It plays one user-assigned identity and signs its tokens with its own key, whose public half a test
 * gives the identity peer as the trusted federated issuer's key. Plain http, as on App Service.
 */
export interface ManagedIdentityPeerOptions {
  /** The identity's client id (what RELAY_MANAGED_IDENTITY_CLIENT_ID names). */
  clientId?: string;
  /** Its object (principal) id: the `sub` of its tokens and a federated credential's subject. */
  principalId?: string;
  /** `iss` of its tokens; for a real managed identity https://login.microsoftonline.com/<tenant>/v2.0. */
  issuer: string;
  tokenLifetimeSeconds?: number;
}

export interface ManagedIdentityTokenRequest {
  resource: string;
  clientId: string | undefined;
  status: number;
}

export interface ManagedIdentityPeer {
  /** The value for IDENTITY_ENDPOINT. */
  endpoint: string;
  /** The value for IDENTITY_HEADER. */
  header: string;
  clientId: string;
  principalId: string;
  issuer: string;
  /** PEM public key of the key that signs the identity's tokens. */
  publicKeyPem: string;
  requests: ManagedIdentityTokenRequest[];
  close(): Promise<void>;
}

export async function startManagedIdentityPeer(
  options: ManagedIdentityPeerOptions,
): Promise<ManagedIdentityPeer> {
  const clientId = options.clientId ?? randomUUID();
  const principalId = options.principalId ?? randomUUID();
  const lifetime = options.tokenLifetimeSeconds ?? 86_400;
  const header = randomUUID();
  const keyId = randomUUID();
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const requests: ManagedIdentityTokenRequest[] = [];

  /** App Service's answers to requests it cannot serve. */
  function refusal(
    request: IncomingMessage,
    url: URL,
    askedClientId: string | undefined,
    resource: string,
  ): { status: number; message: string } | undefined {
    if (request.headers['x-identity-header'] !== header)
      return { status: 401, message: 'Missing or invalid X-IDENTITY-HEADER.' };
    if (url.searchParams.get('api-version') !== '2019-08-01')
      return { status: 400, message: 'Unsupported api-version.' };
    // A Function App with only a user-assigned identity has no system-assigned one to fall back to.
    if (askedClientId !== clientId)
      return { status: 400, message: 'Unable to load the proper Managed Identity.' };
    if (resource === '') return { status: 400, message: 'The resource parameter is required.' };
    return undefined;
  }

  function answer(request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const resource = url.searchParams.get('resource') ?? '';
    const askedClientId = url.searchParams.get('client_id') ?? undefined;
    const record: ManagedIdentityTokenRequest = { resource, clientId: askedClientId, status: 0 };
    requests.push(record);
    const fail = (status: number, message: string): void => {
      record.status = status;
      sendJson(response, status, { statusCode: status, message, correlationId: randomUUID() });
    };
    const problem = refusal(request, url, askedClientId, resource);
    if (problem !== undefined) {
      fail(problem.status, problem.message);
      return;
    }
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresOn = issuedAt + lifetime;
    const accessToken = signJwt(
      {
        aud: resource,
        iss: options.issuer,
        sub: principalId,
        oid: principalId,
        azp: clientId,
        iat: issuedAt,
        nbf: issuedAt,
        exp: expiresOn,
      },
      privateKeyPem,
      keyId,
    );
    record.status = 200;
    sendJson(response, 200, {
      access_token: accessToken,
      expires_on: String(expiresOn),
      resource,
      token_type: 'Bearer',
      client_id: clientId,
    });
  }

  const server = http.createServer(answer);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}/msi/token`,
    header,
    clientId,
    principalId,
    issuer: options.issuer,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    requests,
    async close() {
      const closed = once(server, 'close');
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}
