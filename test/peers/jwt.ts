import {
  constants,
  createHash,
  createPublicKey,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';

/** Just enough JWS (compact, RS256/PS256) for the identity peer: sign its tokens, verify client assertions. */

export type JwtClaims = Record<string, unknown>;

export interface DecodedJwt {
  header: JwtClaims;
  claims: JwtClaims;
  signingInput: string;
  signature: Buffer;
}

export function base64UrlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Signs with RS256, the algorithm Entra ID uses for id_tokens and access tokens. */
export function signJwt(claims: JwtClaims, privateKeyPem: string, keyId: string): string {
  const signingInput = `${base64UrlJson({ typ: 'JWT', alg: 'RS256', kid: keyId })}.${base64UrlJson(claims)}`;
  const signature = sign('sha256', Buffer.from(signingInput), privateKeyPem);
  return `${signingInput}.${signature.toString('base64url')}`;
}

function parseJsonSegment(segment: string): JwtClaims | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as JwtClaims) : undefined;
  } catch {
    return undefined;
  }
}

/** Splits a compact JWS without trusting it; undefined when it is not three base64url JSON segments. */
export function decodeJwt(token: string): DecodedJwt | undefined {
  const [header, claims, signature, ...extra] = token.split('.');
  if (header === undefined || claims === undefined || signature === undefined || extra.length > 0) {
    return undefined;
  }
  const decodedHeader = parseJsonSegment(header);
  const decodedClaims = parseJsonSegment(claims);
  if (!decodedHeader || !decodedClaims) {
    return undefined;
  }
  return {
    header: decodedHeader,
    claims: decodedClaims,
    signingInput: `${header}.${claims}`,
    signature: Buffer.from(signature, 'base64url'),
  };
}

/**
 * Verifies RS256 or PS256: MSAL Node signs certificate assertions with PS256 when given a SHA-256 thumbprint
 * and with RS256 for the deprecated SHA-1 thumbprint.
 */
export function verifyJwtSignature(jwt: DecodedJwt, publicKey: KeyObject): boolean {
  const data = Buffer.from(jwt.signingInput);
  if (jwt.header.alg === 'RS256') {
    return verify('sha256', data, publicKey, jwt.signature);
  }
  if (jwt.header.alg === 'PS256') {
    return verify(
      'sha256',
      data,
      {
        key: publicKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_AUTO,
      },
      jwt.signature,
    );
  }
  return false;
}

/** The `x5t` (SHA-1) and `x5t#S256` (SHA-256) thumbprints of a certificate, base64url as in JWS headers. */
export function certificateThumbprints(certificatePem: string): { x5t: string; x5tS256: string } {
  const der = new X509Certificate(certificatePem).raw;
  return {
    x5t: createHash('sha1').update(der).digest('base64url'),
    x5tS256: createHash('sha256').update(der).digest('base64url'),
  };
}

/** The JWK of a certificate's RSA public key, as a jwks_uri document lists it. */
export function certificateJwk(certificatePem: string, keyId: string): Record<string, unknown> {
  const certificate = new X509Certificate(certificatePem);
  const jwk = createPublicKey(certificatePem).export({ format: 'jwk' });
  return {
    kty: jwk.kty,
    use: 'sig',
    kid: keyId,
    x5t: certificateThumbprints(certificatePem).x5t,
    n: jwk.n,
    e: jwk.e,
    x5c: [certificate.raw.toString('base64')],
  };
}
