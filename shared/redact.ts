/**
 * Last line of defence for text that came from outside (server replies, library error messages) before it
 * reaches a log or a response: anything shaped like a bearer token, a JWT or a long base64 run (an
 * XOAUTH2 string) is replaced. Our own messages never include secrets in the first place.
 */
const secretShapes = [
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g,
  /\b(Bearer|auth=Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /[A-Za-z0-9+/_-]{40,}={0,2}/g,
];

export function redactSecrets(text: string): string {
  let redacted = text;
  for (const shape of secretShapes) redacted = redacted.replace(shape, '[redacted]');
  return redacted;
}
