import { z } from 'zod';
import { senderRelations } from '../config.ts';
import type { ErrorBody } from '../errors.ts';
import type { SendResult } from '../relay.ts';

/**
 * The response bodies, as zod schemas the API description is generated from. `satisfies` ties each to the
 * type the code returns, so a field added to SendResult or ErrorBody fails the typecheck until it is here.
 */
const fieldProblem = z.object({
  field: z.string().meta({ description: 'JSON path of the offending field, e.g. to[1].address' }),
  message: z.string(),
});

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string().meta({ description: 'Stable, machine-readable; see docs/troubleshooting.md' }),
    message: z.string(),
    remedy: z.string().optional().meta({ description: 'What a person can do about it' }),
    details: z
      .union([z.array(fieldProblem), z.record(z.string(), z.unknown())])
      .optional()
      .meta({
        description: 'Field problems for invalid_request; otherwise context such as aadsts or smtpCode',
      }),
  }),
}) satisfies z.ZodType<ErrorBody>;

export const sendResultSchema = z.object({
  sender: z.string().meta({
    description:
      'The mailbox that signed in to Exchange (lower case): the From address itself, or its route in RELAY_SENDER_ROUTES',
  }),
  from: z.string().meta({ description: 'The From address recipients see (lower case)' }),
  relation: z.enum(senderRelations).meta({
    description: 'How the signed-in mailbox sent as the From address: itself, Send As, or Send on Behalf',
  }),
  messageId: z.string().meta({ description: 'The Message-ID header of the sent message' }),
  accepted: z.array(z.string()),
  rejected: z.array(z.string()),
  response: z.string().meta({ description: "Exchange's final SMTP reply, e.g. 250 2.0.0 OK" }),
}) satisfies z.ZodType<SendResult>;
