import { callerKeyHeader } from '../callers.ts';

/**
 * Where a request carries the relay caller key. /api/send and its siblings read the relay's own header;
 * the compatible APIs read it where their official SDKs put their API key, since an app moved onto the
 * relay changes only its base URL and key. Each carrier says how to read the key and how the API
 * description presents it (an OpenAPI security scheme), so the route table names a carrier and both the
 * handlers and the document follow from it.
 */
interface HeaderReader {
  get(name: string): string | null;
}

export interface CallerKeyCarrier {
  /** The key as presented, or null when the request does not carry it this way. */
  read(headers: HeaderReader): string | null;
  /** Where the key goes, for the message a caller gets when it is missing or wrong. */
  carriedIn: string;
  /** The OpenAPI security scheme that describes it. */
  scheme: Record<string, string>;
}

/** `Authorization: <scheme> <credentials>`, the scheme compared case-insensitively (RFC 9110). */
function authorization(headers: HeaderReader, scheme: string): string | null {
  const value = headers.get('authorization');
  if (value === null) return null;
  const separator = value.indexOf(' ');
  if (separator < 0 || value.slice(0, separator).toLowerCase() !== scheme) return null;
  const credentials = value.slice(separator + 1).trim();
  return credentials === '' ? null : credentials;
}

export const callerKeyCarriers = {
  callerKey: {
    read: (headers) => headers.get(callerKeyHeader),
    carriedIn: `${callerKeyHeader} header`,
    scheme: {
      type: 'apiKey',
      in: 'header',
      name: callerKeyHeader,
      description:
        'The API key of a caller configured in RELAY_CALLERS (npm run caller-key creates one); it decides which senders the caller may use.',
    },
  },
  bearerCallerKey: {
    read: (headers) => authorization(headers, 'bearer'),
    carriedIn: 'bearer token (Authorization: Bearer <caller key>)',
    scheme: {
      type: 'http',
      scheme: 'bearer',
      description:
        'A relay caller key (RELAY_CALLERS) as the bearer token, where the SendGrid and Resend SDKs put their API key.',
    },
  },
  postmarkServerToken: {
    read: (headers) => headers.get('x-postmark-server-token'),
    carriedIn: 'X-Postmark-Server-Token header',
    scheme: {
      type: 'apiKey',
      in: 'header',
      name: 'X-Postmark-Server-Token',
      description:
        "A relay caller key (RELAY_CALLERS) as the Postmark server token, where Postmark's SDKs put it.",
    },
  },
  basicCallerKey: {
    carriedIn: 'HTTP Basic password (user name api, the caller key as password)',
    // Mailgun's SDKs send HTTP Basic with the user name `api` and the API key as the password.
    read: (headers) => {
      const credentials = authorization(headers, 'basic');
      if (credentials === null) return null;
      const decoded = Buffer.from(credentials, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0 || decoded.slice(0, colon) !== 'api') return null;
      const key = decoded.slice(colon + 1);
      return key === '' ? null : key;
    },
    scheme: {
      type: 'http',
      scheme: 'basic',
      description:
        "HTTP Basic with the user name `api` and a relay caller key (RELAY_CALLERS) as the password, as Mailgun's SDKs send their API key.",
    },
  },
} satisfies Record<string, CallerKeyCarrier>;

export type CallerKeyCarrierName = keyof typeof callerKeyCarriers;
