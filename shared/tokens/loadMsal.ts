import { createRequire } from 'node:module';

/**
 * Loads MSAL Node on first use, from its CommonJS build: that is one bundled file, where the ES module
 * build is some 200 files Node resolves and compiles one by one. On a cold start (which a consumption plan
 * pays often) the bundle loaded in ~100 ms against ~240 ms (bench: npm run bench, cold start). Every MSAL
 * user in the relay should load it through here, so the process holds one copy.
 */
export type Msal = typeof import('@azure/msal-node');

const requireFromHere = createRequire(import.meta.url);

export function loadMsal(): Msal {
  return requireFromHere('@azure/msal-node') as Msal;
}
