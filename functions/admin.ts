import { randomBytes } from 'node:crypto';
import type { HttpResponseInit } from '@azure/functions';
import { renderAdminPage } from '../shared/admin/adminPage.ts';
import { buildAdminView } from '../shared/admin/adminView.ts';
import { htmlPageHeaders } from '../shared/oauth/consentPages.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/** GET /api/admin (admin key): the operator's page, rendered on the server with a fresh script nonce. */
export async function admin(_request: unknown, runtime: Runtime): Promise<HttpResponseInit> {
  const view = await buildAdminView({
    status: () => runtime.status(),
    queue: () => runtime.queueAdmin.overview(),
    alerts: runtime.config.alerts,
  });
  const page = renderAdminPage(view, { nonce: randomBytes(16).toString('base64') });
  return { status: 200, body: page.html, headers: htmlPageHeaders(page.contentSecurityPolicy) };
}

registerHttp('admin', admin);
