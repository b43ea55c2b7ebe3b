import { sharedTestCertificate, trustCertificate } from '../peers/testCertificate.ts';

// Every peer serves the shared certificate by default; trusting it once per test process lets the real
// clients (MSAL, SecretClient, nodemailer) verify the peers exactly as they verify Microsoft's endpoints.
const { cert } = await sharedTestCertificate();
trustCertificate(cert);
