// npm run caller-key -- --name <app> --senders <address>[,<address>|*@domain]
// Creates a random API key for one calling application and prints the RELAY_CALLERS entry that grants it
// the given senders. Only the key's SHA-256 goes into configuration; hand the key itself to the app.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { hashCallerKey } from '../shared/callers.ts';

const { values } = parseArgs({
  options: { name: { type: 'string' }, senders: { type: 'string' } },
});
if (values.name === undefined || values.senders === undefined) {
  console.error('usage: npm run caller-key -- --name <app> --senders <address>[,<address>|*@domain]');
  process.exit(2);
}
const apiKey = randomBytes(32).toString('base64url');
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
