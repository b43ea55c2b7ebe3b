import { HttpRequest } from '@azure/functions';
import { expect } from 'vitest';
import { checkMailbox } from '../../functions/checkMailbox.ts';
import { bindHttp } from '../../functions/register.ts';
import type { ConnectionCheckReport } from '../../shared/diagnostics/connectionCheck.ts';
import { capturingContext, type RelayHarness } from './relayHarness.ts';

/** POST /api/mailboxes/{address}/test through the registered handler, as the host would call it. */
export async function testMailbox(
  target: RelayHarness,
  address: string,
  body?: unknown,
): Promise<ConnectionCheckReport> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const request = new HttpRequest({
    method: 'POST',
    url: `http://localhost:7071/api/mailboxes/${address}/test`,
    headers:
      text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(text.length) },
    params: { address },
    ...(text === undefined ? {} : { body: { string: text } }),
  });
  const { context } = capturingContext('checkMailbox');
  const response = await bindHttp(checkMailbox, target.runtime)(request, context);
  expect(response.status).toBe(200);
  return response.jsonBody as ConnectionCheckReport;
}
