import { app, type HttpRequest, type HttpResponseInit } from '@azure/functions';
import { createMailboxTester } from '../shared/diagnostics/mailboxTest.ts';
import { invalidRequest } from '../shared/errors.ts';
import { parseSendRequest, senderMailbox } from '../shared/message.ts';
import { type Runtime, runtimeFromEnvironment } from '../shared/runtime.ts';
import { readJsonBody, withErrors } from './httpEdge.ts';

/**
 * POST /api/mailboxes/{address}/test (admin key): a step-by-step connection test for one mailbox. The
 * optional body `{ "sendTo": "<address>" }` also sends a test message; without it nothing is sent.
 */
export function createMailboxTestHandler(runtime: () => Promise<Runtime>) {
  return withErrors(async (request: HttpRequest): Promise<HttpResponseInit> => {
    const { config, tokens } = await runtime();
    const parsed = await readJsonBody(request, 10_000, { emptyAs: {} });
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw invalidRequest([
        { field: '(body)', message: 'must be a JSON object such as {"sendTo": "<address>"}' },
      ]);
    }
    const body = parsed as { sendTo?: unknown };
    // The address and the recipient go through the send schema: the same checks as any message.
    const probe = parseSendRequest(
      {
        from: request.params.address ?? '',
        to: body.sendTo ?? 'nobody@example.invalid',
        subject: 'test',
        text: 'test',
      },
      config.limits,
    );
    const sendTo = body.sendTo === undefined ? undefined : probe.to[0]?.address;
    const report = await createMailboxTester(config.smtp, tokens)(
      senderMailbox(probe),
      sendTo === undefined ? {} : { sendTo },
    );
    return { status: 200, jsonBody: report };
  });
}

export const mailboxTest = createMailboxTestHandler(runtimeFromEnvironment);

app.http('mailboxTest', {
  route: 'mailboxes/{address}/test',
  methods: ['POST'],
  authLevel: 'admin',
  handler: mailboxTest,
});
