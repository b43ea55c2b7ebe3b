/**
 * Run as a separate node process by the restart test: builds a relay runtime from settings alone (passed
 * as JSON in RELAY_TEST_SETTINGS) over the same local secret file, sends one message, and writes the
 * outcome as JSON to stdout. Nothing of the test process's memory is shared: only what the store holds.
 */
import { loadConfig } from '../../shared/config.ts';
import { ensureRelayError, toErrorBody } from '../../shared/errors.ts';
import { parseSendRequest } from '../../shared/message.ts';
import { authorizeMessage } from '../../shared/relay.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createCachedSecretStore } from '../../shared/secrets/cachedSecretStore.ts';
import { createFileSecretStore } from '../../shared/secrets/fileSecretStore.ts';

const settings = JSON.parse(process.env.RELAY_TEST_SETTINGS ?? '{}') as Record<string, string>;
const message = JSON.parse(process.env.RELAY_TEST_MESSAGE ?? '{}') as unknown;
const config = loadConfig(settings);
const secrets = createCachedSecretStore(createFileSecretStore(config.secrets.localSecretsPath), {
  ttlSeconds: config.secrets.cacheSeconds,
});
const runtime = createRuntime(config, secrets);
try {
  const request = parseSendRequest(message, config.limits);
  const result = await runtime.relay.send(
    authorizeMessage({ name: 'restart-test', senders: ['*'] }, request),
  );
  process.stdout.write(JSON.stringify({ ok: true, result }));
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, ...toErrorBody(ensureRelayError(error)) }));
} finally {
  runtime.close();
}
