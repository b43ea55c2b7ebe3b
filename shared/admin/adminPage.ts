import { RelayError } from '../errors.ts';
import { escapeHtml } from '../oauth/consentPages.ts';

/**
 * GET /api/admin: one server-rendered page for the operator. Every mailbox with its health in words, the
 * app credential's days left, the queue with its poisoned messages, and the alert destinations; a little
 * inline script for Connect / Reconnect / Disconnect / Test / Retry. The Functions host authenticates the
 * admin key from the `code` query parameter, so the script reads it from the page's own address and adds
 * it to this origin's requests only: the server never writes the key into the page.
 */
export type AdminMailboxHealth =
  | 'app-only'
  | 'healthy'
  | 'not_connected'
  | 'disconnected'
  | 'needs_consent'
  | 'failing'
  | 'unknown';

export interface AdminMailbox {
  address: string;
  mode: 'app' | 'delegated';
  health: AdminMailboxHealth;
  connectedAt?: string;
  disconnectedAt?: string;
  lastRefreshAt?: string;
  lastSuccessAt?: string;
  lastError?: { code: string; message: string; at: string };
  remedy?: string;
  /** Relative URLs, absent when the action does not apply (connect/reconnect only for delegated; disconnect only when connected). */
  connectUrl?: string;
  disconnectUrl?: string;
  testUrl: string;
}

export interface AdminPoisonedSend {
  id: string;
  callerName: string;
  sender?: string;
  reason?: { code: string; message: string; remedy?: string };
  poisonedAt?: string;
  /** Absent when the message cannot be sent again (not a relay message, already sent, its status gone). */
  retryUrl?: string;
}

export interface AdminPageView {
  generatedAt: string;
  mailboxes: AdminMailbox[];
  credential: { type: string; secretName?: string; expiresOn?: string; daysLeft?: number; warning?: string };
  /** Absent when storage could not be read: then `queueProblem` says why. */
  queue?: { queued: number; failed: number; poisonCount: number; poisoned: AdminPoisonedSend[] };
  queueProblem?: string;
  /** The alert destinations configured (webhook host only, never the URL's path or query, which hold its secret). */
  alerts: { webhookHost?: string; email?: string };
}

export interface RenderedAdminPage {
  html: string;
  /** the Content-Security-Policy header value to send with it */
  contentSecurityPolicy: string;
}

type Tone = 'ok' | 'attention' | 'problem' | 'neutral';

const healthWords: Record<AdminMailboxHealth, { label: string; explanation: string; tone: Tone }> = {
  'app-only': {
    label: 'App-only (no sign-in needed)',
    explanation: "Sends with the app's own token.",
    tone: 'neutral',
  },
  healthy: { label: 'Healthy', explanation: 'Its sign-in was refreshed and works.', tone: 'ok' },
  not_connected: {
    label: 'Not connected',
    explanation: 'Nobody has signed in as this mailbox yet, so sends as it are refused.',
    tone: 'attention',
  },
  disconnected: {
    label: 'Disconnected',
    explanation: 'An administrator disconnected it: sends as it are refused until someone connects it again.',
    tone: 'attention',
  },
  needs_consent: {
    label: 'Needs a new sign-in',
    explanation: 'Microsoft no longer accepts its sign-in; only signing in again fixes it.',
    tone: 'problem',
  },
  failing: {
    label: 'Failing',
    explanation: 'The last refresh or send failed; see the last error.',
    tone: 'problem',
  },
  unknown: {
    label: 'Unknown (not checked yet)',
    explanation: 'The relay has not checked this mailbox yet.',
    tone: 'neutral',
  },
};

const credentialTypeWords: Record<string, string> = {
  secret: 'Client secret',
  certificate: 'Certificate',
  federated: 'Federated credential (the managed identity signs in; nothing to expire)',
};

/** A nonce goes into a header and an attribute: base64 or base64url only, long enough not to be guessed. */
const noncePattern = /^[A-Za-z0-9+/_-]{16,}={0,2}$/;

/**
 * The page's script sends the admin key with each action, so an action URL must stay on this relay: a
 * path, never `//host` or `/\host` (which browsers read as another host) and never a scheme.
 */
function relayPath(url: string, what: string): string {
  if (!url.startsWith('/') || url.startsWith('//') || url.includes('\\'))
    throw new RelayError('internal_error', {
      message: `The admin page needs ${what} as a path on this relay (starting with one "/").`,
    });
  return escapeHtml(url);
}

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

function describeInterval(milliseconds: number): string {
  const minutes = Math.round(Math.abs(milliseconds) / 60_000);
  if (minutes < 1) return 'just now';
  const hours = Math.round(minutes / 60);
  const days = Math.round(hours / 24);
  const amount =
    minutes < 60
      ? plural(minutes, 'minute', 'minutes')
      : hours < 48
        ? plural(hours, 'hour', 'hours')
        : plural(days, 'day', 'days');
  return milliseconds >= 0 ? `${amount} ago` : `in ${amount}`;
}

/** "2026-11-24 09:15 UTC (3 hours ago)", relative to when the page was generated, so it reads the same in any time zone. */
function renderTime(value: string, generatedAt: string): string {
  const at = Date.parse(value);
  if (Number.isNaN(at)) return escapeHtml(value);
  const iso = new Date(at).toISOString();
  const reference = Date.parse(generatedAt);
  const relative = Number.isNaN(reference) ? '' : ` (${describeInterval(reference - at)})`;
  return `<time datetime="${escapeHtml(iso)}">${escapeHtml(`${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`)}</time>${escapeHtml(relative)}`;
}

function row(term: string, descriptionHtml: string): string {
  return `<dt>${escapeHtml(term)}</dt><dd>${descriptionHtml}</dd>`;
}

/** Visible verb, hidden object: screen readers hear "Disconnect ops@contoso.com", the card shows "Disconnect". */
function actionLabel(verb: string, object: string): string {
  return `${escapeHtml(verb)}<span class="visually-hidden"> ${escapeHtml(object)}</span>`;
}

function renderMailbox(mailbox: AdminMailbox, index: number, generatedAt: string): string {
  const health = healthWords[mailbox.health];
  const id = `mailbox-${index}`;
  const address = escapeHtml(mailbox.address);
  const time = (value: string | undefined, missing: string) =>
    value === undefined ? escapeHtml(missing) : renderTime(value, generatedAt);
  const rows = [
    row(
      'Mode',
      escapeHtml(
        mailbox.mode === 'app' ? "App-only (the app's own token)" : 'Delegated (signs in as the mailbox)',
      ),
    ),
    row(
      'Health',
      `<span class="badge tone-${health.tone}">${escapeHtml(health.label)}</span> ${escapeHtml(health.explanation)}`,
    ),
    ...(mailbox.mode === 'delegated'
      ? [
          row('Connected', time(mailbox.connectedAt, 'Not recorded')),
          ...(mailbox.disconnectedAt === undefined
            ? []
            : [row('Disconnected', time(mailbox.disconnectedAt, ''))]),
          row('Last refresh', time(mailbox.lastRefreshAt, 'Not refreshed yet')),
          row('Last success', time(mailbox.lastSuccessAt, 'None recorded')),
        ]
      : []),
    row(
      'Last error',
      mailbox.lastError === undefined
        ? 'None'
        : `<code>${escapeHtml(mailbox.lastError.code)}</code>: ${escapeHtml(mailbox.lastError.message)} (${renderTime(mailbox.lastError.at, generatedAt)})`,
    ),
    ...(mailbox.remedy === undefined ? [] : [row('What to do', escapeHtml(mailbox.remedy))]),
  ];
  // "Reconnect" for every state but never-connected: a disconnected or failing mailbox is connected again.
  const connectVerb = mailbox.health === 'not_connected' ? 'Connect' : 'Reconnect';
  const actions = [
    ...(mailbox.connectUrl === undefined
      ? []
      : [
          `<a class="button" data-carries-key href="${relayPath(mailbox.connectUrl, 'the connect URL')}" rel="noreferrer" referrerpolicy="no-referrer">${actionLabel(connectVerb, mailbox.address)}</a>`,
        ]),
    `<button type="button" class="secondary" data-action="test" data-url="${relayPath(mailbox.testUrl, 'the test URL')}">${actionLabel('Test', mailbox.address)}</button>`,
    ...(mailbox.disconnectUrl === undefined
      ? []
      : [
          `<button type="button" class="danger-outline" data-action="disconnect" aria-expanded="false" aria-controls="${id}-confirm">${actionLabel('Disconnect', mailbox.address)}</button>`,
        ]),
  ];
  const confirmation =
    mailbox.disconnectUrl === undefined
      ? ''
      : `
        <div class="confirm" id="${id}-confirm" hidden>
          <p>Disconnect ${address}? The relay stops using and refreshing its sign-in and refuses sends as it until someone connects it again.</p>
          <div class="actions">
            <button type="button" class="danger" data-action="confirm-disconnect" data-url="${relayPath(mailbox.disconnectUrl, 'the disconnect URL')}">${actionLabel('Confirm disconnect', mailbox.address)}</button>
            <button type="button" class="secondary" data-action="cancel-disconnect">${actionLabel('Cancel', `disconnecting ${mailbox.address}`)}</button>
          </div>
        </div>`;
  return `
      <li class="card" data-mailbox="${address}" data-health="${escapeHtml(mailbox.health)}">
        <section aria-labelledby="${id}">
          <h3 id="${id}">${address}</h3>
          <dl>${rows.join('')}</dl>
          <div class="actions">${actions.join('')}</div>${confirmation}
          <p class="result" role="status" aria-live="polite"></p>
        </section>
      </li>`;
}

function describeDaysLeft(credential: AdminPageView['credential']): string {
  const { daysLeft } = credential;
  const expires = credential.expiresOn === undefined ? '' : ` (expires ${credential.expiresOn.slice(0, 10)})`;
  if (daysLeft === undefined)
    return credential.secretName === undefined ? 'Nothing to expire' : 'Expiry unknown';
  if (daysLeft < 0) return `Expired ${plural(-daysLeft, 'day', 'days')} ago${expires}`;
  if (daysLeft === 0) return `Expires today${expires}`;
  return `${plural(daysLeft, 'day', 'days')} left${expires}`;
}

function renderCredential(credential: AdminPageView['credential']): string {
  const rows = [
    row('Type', escapeHtml(credentialTypeWords[credential.type] ?? credential.type)),
    ...(credential.secretName === undefined
      ? []
      : [row('Stored as', `<code>${escapeHtml(credential.secretName)}</code>`)]),
    row('Days left', escapeHtml(describeDaysLeft(credential))),
  ];
  const warning =
    credential.warning === undefined
      ? ''
      : `<p class="warning"><strong>Warning:</strong> ${escapeHtml(credential.warning)}</p>`;
  return `<dl>${rows.join('')}</dl>${warning}`;
}

function renderPoisoned(send: AdminPoisonedSend, generatedAt: string): string {
  const from = send.sender ?? send.callerName;
  const reason =
    send.reason === undefined
      ? 'Not recorded'
      : `<code>${escapeHtml(send.reason.code)}</code>: ${escapeHtml(send.reason.message)}${
          send.reason.remedy === undefined ? '' : ` What to do: ${escapeHtml(send.reason.remedy)}`
        }`;
  const rows = [
    row('Message', `<code>${escapeHtml(send.id)}</code>`),
    row('Caller', escapeHtml(send.callerName)),
    row('Sender', send.sender === undefined ? 'Not recorded' : escapeHtml(send.sender)),
    row('Reason', reason),
    ...(send.poisonedAt === undefined ? [] : [row('Set aside', renderTime(send.poisonedAt, generatedAt))]),
  ];
  return `
      <li class="card" data-poisoned="${escapeHtml(send.id)}" data-from="${escapeHtml(from)}">
        <dl>${rows.join('')}</dl>
        <div class="actions">${
          send.retryUrl === undefined
            ? '<p>This message cannot be sent again from here.</p>'
            : `
          <button type="button" data-action="retry" data-url="${relayPath(send.retryUrl, 'the retry URL')}">${actionLabel('Retry', `message ${send.id} from ${from}`)}</button>`
        }
        </div>
        <p class="result" role="status" aria-live="polite"></p>
      </li>`;
}

function renderQueue(view: AdminPageView): string {
  const { queue } = view;
  if (queue === undefined)
    return `<p class="warning"><strong>The queue could not be read:</strong> ${escapeHtml(view.queueProblem ?? 'no reason was given.')}</p>`;
  const counts = `<dl>${[
    row('Queued', escapeHtml(plural(queue.queued, 'message', 'messages'))),
    row('Failed', escapeHtml(plural(queue.failed, 'message', 'messages'))),
    row('Poisoned', escapeHtml(plural(queue.poisonCount, 'message', 'messages'))),
  ].join('')}</dl>`;
  if (queue.poisoned.length === 0)
    return `${counts}<p>${queue.poisonCount === 0 ? 'No poisoned messages.' : 'The poisoned messages could not be listed.'}</p>`;
  const shown =
    queue.poisonCount > queue.poisoned.length
      ? `<p>Showing ${queue.poisoned.length} of ${queue.poisonCount}.</p>`
      : '';
  return `${counts}
    <h3>Poisoned messages</h3>
    <p>A poisoned message failed every attempt and was set aside. Fix its cause first (its reason says what), then retry it: a retry without a fix only fails again.</p>${shown}
    <ul class="cards">${queue.poisoned.map((send) => renderPoisoned(send, view.generatedAt)).join('')}
    </ul>`;
}

function renderAlerts(alerts: AdminPageView['alerts']): string {
  const destinations = [
    ...(alerts.webhookHost === undefined
      ? []
      : [`<li>Webhook at <code>${escapeHtml(alerts.webhookHost)}</code></li>`]),
    ...(alerts.email === undefined ? [] : [`<li>Mail to ${escapeHtml(alerts.email)}</li>`]),
  ];
  if (destinations.length === 0)
    return '<p>No alerts are configured: nobody is told when a mailbox needs a new sign-in. Set RELAY_ALERT_WEBHOOK_URL (and optionally RELAY_ALERT_EMAIL).</p>';
  return `<p>Health changes are announced to:</p><ul>${destinations.join('')}</ul>`;
}

function renderSummary(view: AdminPageView): string {
  const findings = [
    ...view.mailboxes
      .filter((mailbox) => mailbox.health !== 'healthy' && mailbox.health !== 'app-only')
      .map((mailbox) => `${mailbox.address}: ${healthWords[mailbox.health].label}`),
    ...(view.credential.warning === undefined ? [] : ['App credential: see the warning below']),
    ...(view.queue === undefined ? ['The queue could not be read'] : []),
    ...(view.queue !== undefined && view.queue.poisonCount > 0
      ? [plural(view.queue.poisonCount, 'poisoned message', 'poisoned messages')]
      : []),
  ];
  if (findings.length === 0) return '<p>Everything is healthy.</p>';
  return `<p>Needs attention:</p><ul>${findings.map((finding) => `<li>${escapeHtml(finding)}</li>`).join('')}</ul>`;
}

/*
 * Colours meet WCAG AA (4.5:1) for text on its background; health also reads in words, never colour alone.
 * The layout is one column of cards on a phone and a grid on wider screens, so nothing scrolls sideways.
 */
const styles = `
:root { color-scheme: light; --text: #1b1b1b; --muted: #444b55; --page: #ffffff; --card: #f5f6f8; --border: #b9bfc8; --accent: #0b5cad; --danger: #a4262c; }
*, *::before, *::after { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--text); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header, main { max-width: 72rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 0.25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; }
h3 { font-size: 1.05rem; margin: 0 0 0.5rem; overflow-wrap: anywhere; }
.generated { color: var(--muted); margin: 0; }
.cards { list-style: none; margin: 0; padding: 0; display: grid; gap: 1rem; grid-template-columns: repeat(auto-fill, minmax(min(100%, 24rem), 1fr)); }
.card { min-width: 0; padding: 1rem; background: var(--card); border: 1px solid var(--border); border-radius: 6px; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.25rem 0.75rem; margin: 0 0 0.5rem; }
dt { font-weight: 600; }
dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, "Cascadia Mono", Menlo, monospace; font-size: 0.95em; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 0.4rem; border: 1px solid currentColor; border-radius: 4px; font-weight: 600; }
.tone-ok { color: #0b5a2a; background: #e3f3e8; }
.tone-attention { color: #6b4300; background: #fff3d6; }
.tone-problem { color: #8c1c13; background: #fde7e5; }
.tone-neutral { color: #303841; background: #e8eaee; }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; margin-top: 0.75rem; }
button, .button { display: inline-flex; align-items: center; min-height: 44px; padding: 0.4rem 1rem; border: 2px solid var(--accent); border-radius: 4px; background: var(--accent); color: #ffffff; font: inherit; font-weight: 600; text-decoration: none; cursor: pointer; }
button.secondary { background: #ffffff; color: var(--accent); }
button.danger-outline { background: #ffffff; color: var(--danger); border-color: var(--danger); }
button.danger { background: var(--danger); border-color: var(--danger); color: #ffffff; }
button[aria-busy="true"] { cursor: progress; }
:focus-visible { outline: 3px solid #1b1b1b; outline-offset: 2px; }
.confirm { margin-top: 0.75rem; padding: 0.75rem; background: #ffffff; border: 2px solid var(--danger); border-radius: 4px; }
.confirm p { margin: 0; }
.result { margin: 0.5rem 0 0; overflow-wrap: anywhere; }
.result.failed { color: #8c1c13; font-weight: 600; }
.warning { padding: 0.5rem 0.75rem; background: #fff3d6; color: #4d3000; border-left: 4px solid #8a5a00; overflow-wrap: anywhere; }
#notice { margin: 1rem 0 0; font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0; overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap; }
@media (max-width: 30rem) { dl { grid-template-columns: minmax(0, 1fr); } dd { margin-bottom: 0.4rem; } }
`;

/*
 * Plain browser JavaScript (the repository's TypeScript has no DOM types). It writes with textContent only,
 * never innerHTML, so nothing the relay answers can become markup. The admin key (?code=) goes to this
 * origin only: as x-functions-key on fetch, as ?code= on Connect links (the Functions host accepts both).
 */
const script = `
'use strict';
const adminKey = new URLSearchParams(location.search).get('code');
const noticeKey = 'relay-admin-notice';
const stepWords = { token: 'token', tcp_connect: 'TCP connection', session_slot: 'SMTP session slot', starttls: 'STARTTLS', auth_xoauth2: 'XOAUTH2 sign-in', test_message: 'test message' };

function onThisRelay(url) {
  const target = new URL(url, location.href);
  return target.origin === location.origin ? target : undefined;
}

for (const link of document.querySelectorAll('a[data-carries-key]')) {
  const target = onThisRelay(link.getAttribute('href'));
  if (target !== undefined && adminKey !== null) {
    target.searchParams.set('code', adminKey);
    link.href = target.href;
  }
}

const notice = sessionStorage.getItem(noticeKey);
if (notice !== null) {
  sessionStorage.removeItem(noticeKey);
  document.getElementById('notice').textContent = notice;
}

async function callRelay(method, url) {
  const target = onThisRelay(url);
  if (target === undefined) return { ok: false, status: 0, body: undefined };
  const headers = { accept: 'application/json' };
  if (adminKey !== null) headers['x-functions-key'] = adminKey;
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin', redirect: 'error', referrerPolicy: 'no-referrer' };
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    init.body = '{}';
  }
  let response;
  try {
    response = await fetch(target, init);
  } catch {
    return { ok: false, status: 0, body: undefined };
  }
  let body;
  // Only a JSON answer is read: an HTML error page from a proxy or the host is never shown.
  if ((response.headers.get('content-type') || '').includes('json')) {
    try { body = await response.json(); } catch { body = undefined; }
  }
  return { ok: response.ok, status: response.status, body };
}

function describeFailure(what, result) {
  const error = result.body !== null && typeof result.body === 'object' ? result.body.error : undefined;
  if (error !== null && typeof error === 'object' && typeof error.message === 'string') {
    const code = typeof error.code === 'string' ? ' (' + error.code + ')' : '';
    const remedy = typeof error.remedy === 'string' ? ' What to do: ' + error.remedy : '';
    return what + ' failed: ' + error.message.replace(/.$/, '') + code + '.' + remedy;
  }
  if (result.status === 0) return what + ' failed: the relay could not be reached. Check the connection and try again.';
  if (result.status === 401 || result.status === 403)
    return what + ' failed: the relay refused the admin key (HTTP ' + result.status + '). Open this page as /api/admin?code=<admin key>.';
  return what + ' failed: the relay answered HTTP ' + result.status + ' without an explanation. Its log has the details.';
}

function describeReport(mailbox, report) {
  const steps = Array.isArray(report.steps) ? report.steps : [];
  const stepName = (step) => stepWords[step.step] || String(step.step);
  const warnings = Array.isArray(report.warnings) && report.warnings.length > 0 ? ' Note: ' + report.warnings.join(' ') : '';
  if (report.ok === true) {
    const passed = steps.filter((step) => step.outcome === 'ok').map(stepName);
    return 'Test passed for ' + mailbox + (passed.length > 0 ? ': ' + passed.join(', ') + ' worked.' : '.') + warnings;
  }
  const failed = steps.find((step) => step.outcome === 'failed');
  if (failed === undefined) return 'Test failed for ' + mailbox + '.' + warnings;
  const through = failed.mailbox && failed.mailbox !== mailbox ? ' (signing in as ' + failed.mailbox + ')' : '';
  const error = failed.error || {};
  const message = typeof error.message === 'string' ? ': ' + error.message.replace(/.$/, '') : '';
  const code = (typeof error.code === 'string' ? ' (' + error.code + ')' : '') + '.';
  const remedy = typeof error.remedy === 'string' ? ' What to do: ' + error.remedy : '';
  return 'Test failed for ' + mailbox + ' at the ' + stepName(failed) + ' step' + through + message + code + remedy + warnings;
}

function show(region, text, failed) {
  region.textContent = text;
  region.classList.toggle('failed', failed);
}

function reloadWith(text) {
  sessionStorage.setItem(noticeKey, text);
  location.reload();
}

async function act(button) {
  const card = button.closest('.card');
  const region = card.querySelector('.result');
  const confirm = card.querySelector('.confirm');
  const mailbox = card.dataset.mailbox;
  const action = button.dataset.action;
  if (action === 'disconnect') {
    confirm.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    confirm.querySelector('[data-action="confirm-disconnect"]').focus();
    return;
  }
  if (action === 'cancel-disconnect') {
    confirm.hidden = true;
    const opener = card.querySelector('[data-action="disconnect"]');
    opener.setAttribute('aria-expanded', 'false');
    opener.focus();
    show(region, mailbox + ' stays connected.', false);
    return;
  }
  if (action === 'confirm-disconnect') {
    show(region, 'Disconnecting ' + mailbox + '…', false);
    const result = await callRelay('DELETE', button.dataset.url);
    if (result.ok) return reloadWith('Disconnected ' + mailbox + '. Sends as it are refused until someone connects it again.');
    confirm.hidden = true;
    card.querySelector('[data-action="disconnect"]').setAttribute('aria-expanded', 'false');
    return show(region, describeFailure('Disconnecting ' + mailbox, result), true);
  }
  if (action === 'test') {
    show(region, 'Testing ' + mailbox + '…', false);
    const result = await callRelay('POST', button.dataset.url);
    if (!result.ok || result.body === null || typeof result.body !== 'object')
      return show(region, describeFailure('Testing ' + mailbox, result), true);
    return show(region, describeReport(mailbox, result.body), result.body.ok !== true);
  }
  if (action === 'retry') {
    const message = card.dataset.poisoned;
    show(region, 'Retrying message ' + message + '…', false);
    const result = await callRelay('POST', button.dataset.url);
    if (result.ok) return reloadWith('Message ' + message + ' from ' + card.dataset.from + ' is queued again.');
    return show(region, describeFailure('Retrying message ' + message, result), true);
  }
}

document.addEventListener('click', async (event) => {
  const button = event.target instanceof Element ? event.target.closest('button[data-action]') : null;
  if (button === null || button.getAttribute('aria-busy') === 'true') return;
  button.setAttribute('aria-busy', 'true');
  try {
    await act(button);
  } finally {
    button.removeAttribute('aria-busy');
  }
});
`;

export function renderAdminPage(view: AdminPageView, options: { nonce: string }): RenderedAdminPage {
  if (!noncePattern.test(options.nonce))
    throw new RelayError('internal_error', {
      message: 'The admin page nonce must be at least 16 base64 characters.',
    });
  const { nonce } = options;
  const contentSecurityPolicy = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  const mailboxes =
    view.mailboxes.length === 0
      ? '<p>No mailboxes are configured: set RELAY_MAILBOXES.</p>'
      : `<ul class="cards">${view.mailboxes.map((mailbox, index) => renderMailbox(mailbox, index, view.generatedAt)).join('')}
    </ul>`;
  const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="no-referrer">
    <title>Mail relay administration</title>
    <style nonce="${nonce}">${styles}</style>
  </head>
  <body>
    <header>
      <h1>Mail relay administration</h1>
      <p class="generated">Generated ${renderTime(view.generatedAt, view.generatedAt)}. Reload the page to see changes.</p>
    </header>
    <main>
      <p id="notice" role="status" aria-live="polite"></p>
      <section aria-labelledby="summary-title">
        <h2 id="summary-title">Summary</h2>
        ${renderSummary(view)}
      </section>
      <section aria-labelledby="mailboxes-title">
        <h2 id="mailboxes-title">Mailboxes</h2>
        ${mailboxes}
      </section>
      <section aria-labelledby="credential-title">
        <h2 id="credential-title">App credential</h2>
        ${renderCredential(view.credential)}
      </section>
      <section aria-labelledby="queue-title">
        <h2 id="queue-title">Send queue</h2>
        ${renderQueue(view)}
      </section>
      <section aria-labelledby="alerts-title">
        <h2 id="alerts-title">Alerts</h2>
        ${renderAlerts(view.alerts)}
      </section>
    </main>
    <script nonce="${nonce}">${script}</script>
  </body>
</html>
`;
  return { html, contentSecurityPolicy };
}
