// npm run caller-key -- --name <app> --senders <address>[,<address>|*@domain] [--for sendgrid|resend|postmark|mailgun]
// Creates a random API key for one calling application and prints the RELAY_CALLERS entry that grants it
// the given senders. Only the key's SHA-256 goes into configuration; hand the key itself to the app.
// With --for, the key is shaped as that provider's SDK expects (the relay's compatible APIs accept it
// where the SDK carries its API key) and the base URL the app sets is printed too.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { compatibleProviders } from '../shared/api/routes.ts';
import { hashCallerKey } from '../shared/callers.ts';

const providers = compatibleProviders();
const usage = `usage: npm run caller-key -- --name <app> --senders <address>[,<address>|*@domain] [--for ${[...providers.keys()].join('|')}]`;
const { values } = parseArgs({
  options: { name: { type: 'string' }, senders: { type: 'string' }, for: { type: 'string' } },
});
const provider = values.for === undefined ? undefined : providers.get(values.for);
if (
  values.name === undefined ||
  values.senders === undefined ||
  (values.for !== undefined && provider === undefined)
) {
  console.error(usage);
  process.exit(2);
}
const apiKey = `${provider?.api.keyPrefix ?? ''}${randomBytes(32).toString('base64url')}`;
const rule = {
  name: values.name,
  keySha256: hashCallerKey(apiKey),
  senders: values.senders
    .split(',')
    .map((sender) => sender.trim())
    .filter((sender) => sender !== ''),
};
console.log(`API key for ${values.name} (give it to the app; it is not stored anywhere):\n  ${apiKey}\n`);
console.log(`Add this entry to the RELAY_CALLERS JSON array:\n  ${JSON.stringify(rule)}`);
if (provider !== undefined) {
  console.log(
    `\nThe app's ${values.for} SDK sends to ${provider.path} on the relay; docs/compatible-apis.md has its base-URL setting per language.`,
  );
}
