/**
 * What an access token says about who asked for what, read for diagnostics only: the payload of the JWT,
 * decoded without checking its signature (Exchange checks it; the relay only reports). Only claims that
 * explain a refusal are kept, never the token. Entra puts the application permissions with admin consent in
 * `roles` (app-only) and the delegated ones in `scp`.
 */
export interface TokenClaims {
  aud?: string;
  tid?: string;
  appid?: string;
  roles?: string[];
  scp?: string;
  upn?: string;
}

const reported = ['aud', 'tid', 'appid', 'roles', 'scp', 'upn'] as const;

/** The reported claims, or undefined when the token is not a JWT (Entra may issue opaque tokens). */
export function readTokenClaims(accessToken: string): TokenClaims | undefined {
  const payload = accessToken.split('.')[1];
  if (payload === undefined) return undefined;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof decoded !== 'object' || decoded === null) return undefined;
  const source = decoded as Record<string, unknown>;
  const claims: Record<string, unknown> = {};
  for (const name of reported) {
    const value = source[name];
    if (typeof value === 'string') claims[name] = value;
    else if (name === 'roles' && Array.isArray(value))
      claims[name] = value.filter((role) => typeof role === 'string');
  }
  return claims as TokenClaims;
}
