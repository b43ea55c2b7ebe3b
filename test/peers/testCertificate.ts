import tls from 'node:tls';
import { generate } from 'selfsigned';

/** A PEM private key and the self-signed certificate that goes with it. */
export interface TestCertificate {
  key: string;
  cert: string;
}

export interface TestCertificateOptions {
  /** Subject common name; the SANs always cover localhost and 127.0.0.1 whatever the name. */
  commonName?: string;
}

const ONE_DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Creates an RSA 2048 certificate signed with sha256 (OpenSSL 3 refuses sha1 signatures), valid from a day ago
 * (so clock skew between test processes never makes it "not yet valid") to a year from now.
 */
export async function createTestCertificate(options: TestCertificateOptions = {}): Promise<TestCertificate> {
  const notBeforeDate = new Date(Date.now() - ONE_DAY_MS);
  const notAfterDate = new Date(Date.now() + 365 * ONE_DAY_MS);
  const generated = await generate([{ name: 'commonName', value: options.commonName ?? 'localhost' }], {
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  return { key: generated.private, cert: generated.cert };
}

let sharedCertificate: Promise<TestCertificate> | undefined;

/**
 * One certificate for every peer of the process: key generation costs tens of milliseconds, and a single
 * trusted certificate keeps the default CA store small.
 */
export function sharedTestCertificate(): Promise<TestCertificate> {
  sharedCertificate ??= createTestCertificate();
  return sharedCertificate;
}

/**
 * Adds a certificate to the process-wide default CA store, so MSAL (fetch), SecretClient (node:https) and
 * nodemailer (node:tls) trust the peers without NODE_EXTRA_CA_CERTS, which must be set before Node starts.
 * Connections that an agent already keeps open are not affected: trust before the first request. Node
 * deduplicates the list, so trusting the same certificate twice is harmless.
 */
export function trustCertificate(certPem: string): void {
  if (typeof tls.setDefaultCACertificates !== 'function') {
    throw new Error(
      `tls.setDefaultCACertificates needs Node 22.19 or later; this is Node ${process.version}`,
    );
  }
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), certPem]);
}
