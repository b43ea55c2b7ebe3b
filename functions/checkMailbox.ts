import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { readJsonBody } from '../shared/api/requestBody.ts';
import { parseConnectionCheckRequest } from '../shared/diagnostics/connectionCheck.ts';
import type { Runtime } from '../shared/runtime.ts';
import { registerHttp } from './register.ts';

/**
 * POST /api/mailboxes/{address}/test (admin key): a step-by-step connection check of one mailbox. The
 * optional body `{ "sendTo": "<address>" }` also sends a test message; without it nothing is sent.
 */
export async function checkMailbox(request: HttpRequest, runtime: Runtime): Promise<HttpResponseInit> {
  const body = await readJsonBody(request, 10_000, { emptyAs: {} });
  const { mailbox, options } = parseConnectionCheckRequest(
    request.params.address ?? '',
    body,
    runtime.config.limits,
  );
  return { status: 200, jsonBody: await runtime.checkConnection(mailbox, options) };
}

registerHttp('checkMailbox', checkMailbox);
