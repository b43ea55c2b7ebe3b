import { connect as tcpConnect } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import MailComposer from 'nodemailer/lib/mail-composer';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { MailboxMode, RelayConfig } from '../config.ts';
import { ensureRelayError, invalidRequest, type RelayError } from '../errors.ts';
import type { MailboxLimits } from '../limits/mailboxLimits.ts';
import { parseSendRequest, senderMailbox } from '../message.ts';
import { sendAsDenied } from '../relay.ts';
import {
  grantCommand,
  rightName,
  type SenderRelation,
  type SenderRoute,
  type SenderRouter,
} from '../senderRoutes.ts';
import { smtpConnectionOptions } from '../smtp/connectionOptions.ts';
import type { MailboxTransports } from '../smtp/mailboxTransports.ts';
import { mapSmtpError } from '../smtp/smtpErrors.ts';
import type { MailboxTokenProvider } from '../tokens/accessToken.ts';
import { readTokenClaims } from '../tokens/tokenClaims.ts';

/**
 * "Test connection" for one address, step by step, each failure with what to fix: token acquisition (the
 * AADSTS code comes through the identity error table, and the token's claims are reported), TCP connect,
 * STARTTLS with the server's certificate chain, AUTH XOAUTH2, and only when asked a test message. Steps
 * after a failure are skipped. A routed address (shared/senderRoutes.ts) is tested through each mailbox
 * that signs in for it, and its test message goes out with the routed From, so Exchange checks the right.
 */
export type StepName =
  | 'token'
  | 'tcp_connect'
  | 'session_slot'
  | 'starttls'
  | 'auth_xoauth2'
  | 'test_message';

export interface StepReport {
  step: StepName;
  /** The mailbox that signs in for this step. */
  mailbox: string;
  outcome: 'ok' | 'failed' | 'skipped';
  durationMs: number;
  detail?: Record<string, unknown>;
  error?: { code: string; message: string; remedy?: string; details?: unknown };
}

export interface SignInReport {
  mailbox: string;
  mode: MailboxMode;
  /** For a routed address: the right this mailbox needs on it, and the command that grants it. */
  requiredRight?: { right: string; command: string };
}

export interface ConnectionCheckReport {
  /** The address asked about: a mailbox, or a From address with a route. */
  mailbox: string;
  ok: boolean;
  relation: SenderRelation;
  /** Who signs in for it: the address itself, or each mailbox of its route, tested one after the other. */
  signIn: SignInReport[];
  /** Findings that do not fail a step but explain later refusals (the union trap of RBAC for Applications). */
  warnings: string[];
  steps: StepReport[];
}

export interface ConnectionCheckOptions {
  /** When set, a short test message is sent to this address; otherwise nothing is ever sent. */
  sendTo?: string;
}

function toStepError(error: RelayError): StepReport['error'] {
  return {
    code: error.code,
    message: error.message,
    ...(error.remedy === undefined ? {} : { remedy: error.remedy }),
    ...(error.details === undefined ? {} : { details: error.details }),
  };
}

function describeChain(leaf: PeerCertificate | undefined): Record<string, unknown>[] {
  const chain: Record<string, unknown>[] = [];
  let certificate = leaf as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
  while (certificate !== undefined && chain.length < 10) {
    chain.push({
      subject: certificate.subject?.CN,
      issuer: certificate.issuer?.CN,
      validTo: certificate.valid_to,
      fingerprint256: certificate.fingerprint256,
    });
    const next = certificate.issuerCertificate as
      | (PeerCertificate & { issuerCertificate?: PeerCertificate })
      | undefined;
    if (next === undefined || next === certificate || next.fingerprint256 === certificate.fingerprint256)
      break;
    certificate = next;
  }
  return chain;
}

/**
 * Entra puts an application permission with admin consent in the token's `roles`. Exchange grants the union
 * of that consent and RBAC for Applications, so an Entra SMTP.SendAsApp grant silently undoes the scoping.
 */
const unscopedGrantWarning =
  "The app-only token carries the Entra application permission SMTP.SendAsApp ('roles'). Exchange grants the union of Entra consent and RBAC for Applications, so with it the app may sign in to every mailbox it has FullAccess to, whatever the management scope says. For least privilege (docs/app-only.md), remove the API permission Office 365 Exchange Online > SMTP.SendAsApp from the app registration and grant mailboxes with npm run exchange-setup.";

/** Exchange caches service principal permissions: a refusal right after setup may only be the cache. */
const permissionCacheNote =
  ' If the role assignment or mailbox permission was made in the last 2 hours, Exchange may not have applied it yet (its permission cache holds 30 minutes to 2 hours; Test-ServicePrincipalAuthorization bypasses that cache, so it can pass before sends work): test again later.';

/** The refusals of a login that a grant not yet applied looks like (535 5.7.3, 4.2.0 mailbox logon). */
const refusalsAPermissionCacheExplains = new Set<string>(['smtp_auth_rejected', 'mailbox_logon_failed']);

export type ConnectionCheck = (
  address: string,
  options?: ConnectionCheckOptions,
) => Promise<ConnectionCheckReport>;

export interface ConnectionCheckDependencies {
  smtp: RelayConfig['smtp'];
  tokens: MailboxTokenProvider;
  /** The test's SMTP session takes one of the mailbox's session slots, as every send does. */
  transports: Pick<MailboxTransports, 'withSlot'>;
  /** And its test message takes a send slot. */
  limits: Pick<MailboxLimits, 'reserve'>;
  router: SenderRouter;
  modeOf(mailbox: string): MailboxMode;
}

/** How long the test waits for one of the mailbox's sessions, then reports them all busy. */
export const CHECK_SLOT_WAIT_MS = 5_000;

export function createConnectionCheck({
  smtp,
  tokens,
  transports,
  limits,
  router,
  modeOf,
}: ConnectionCheckDependencies): ConnectionCheck {
  const timeoutMs = smtp.timeoutSeconds * 1000;
  const connectionOptions = smtpConnectionOptions(smtp);
  const context = (mailbox: string) => ({ host: smtp.host, port: smtp.port, mailbox });

  function tcpStep(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const socket = tcpConnect({ host: smtp.host, port: smtp.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        const detail = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
        socket.destroy();
        resolve(detail);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Every step for one sign-in mailbox; a failed step skips the rest of that mailbox's steps. */
  async function checkSignIn(
    mailbox: string,
    route: SenderRoute,
    options: ConnectionCheckOptions,
    report: ConnectionCheckReport,
  ): Promise<void> {
    const mode = modeOf(mailbox);
    let failed = false;
    let connection: SMTPConnection | undefined;
    let accessToken = '';
    let chain: Record<string, unknown>[] = [];

    async function run(
      step: StepName,
      action: () => Promise<Record<string, unknown>>,
      mapError: (error: unknown) => RelayError,
    ) {
      if (failed) {
        report.steps.push({ step, mailbox, outcome: 'skipped', durationMs: 0 });
        return;
      }
      const started = Date.now();
      try {
        const detail = await action();
        report.steps.push({ step, mailbox, outcome: 'ok', durationMs: Date.now() - started, detail });
      } catch (error) {
        failed = true;
        report.steps.push({
          step,
          mailbox,
          outcome: 'failed',
          durationMs: Date.now() - started,
          error: toStepError(mapError(error)),
        });
      }
    }

    const smtpError = (error: unknown) => mapSmtpError(error, context(mailbox));

    await run(
      'token',
      async () => {
        const token = await tokens(mailbox, { forceRefresh: false });
        accessToken = token.accessToken;
        const claims = readTokenClaims(accessToken);
        if (mode === 'app' && claims?.roles?.includes('SMTP.SendAsApp') === true)
          if (!report.warnings.includes(unscopedGrantWarning)) report.warnings.push(unscopedGrantWarning);
        return {
          mode,
          renewAfter: token.renewAfter.toISOString(),
          ...(claims === undefined ? {} : { claims }),
        };
      },
      ensureRelayError,
    );
    await run('tcp_connect', tcpStep, (error) => {
      const relayError = smtpError(error);
      return Object.assign(relayError, {
        remedy: `Allow outbound TCP ${smtp.port} from the Function App to ${smtp.host} (NSG, firewall, VNet route); check RELAY_SMTP_HOST and RELAY_SMTP_PORT.`,
      });
    });
    // Held from here until the session is closed: the test never is a session beyond the mailbox's limit.
    let releaseSlot: (() => void) | undefined;
    let slotHeld: Promise<unknown> = Promise.resolve();
    await run(
      'session_slot',
      () =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          const asked = Date.now();
          slotHeld = transports
            .withSlot(mailbox, CHECK_SLOT_WAIT_MS, () => {
              resolve({ waitedMs: Date.now() - asked });
              return new Promise<void>((done) => {
                releaseSlot = done;
              });
            })
            .catch(reject);
        }),
      ensureRelayError,
    );
    await run(
      'starttls',
      async () => {
        connection = new SMTPConnection({
          ...connectionOptions,
          tls: {
            ...connectionOptions.tls,
            // Called only for a chain that verified: keep it for the report, then check the name as usual.
            checkServerIdentity: (host: string, certificate: PeerCertificate) => {
              chain = describeChain(certificate);
              return checkServerIdentity(host, certificate);
            },
          },
        });
        const opened = connection;
        opened.on('error', () => undefined);
        await new Promise<void>((resolve, reject) => {
          opened.once('error', reject);
          opened.connect(() => resolve());
        });
        return { secure: opened.secure, certificateChain: chain };
      },
      smtpError,
    );
    await run(
      'auth_xoauth2',
      async () => {
        const opened = connection as SMTPConnection;
        await new Promise<void>((resolve, reject) => {
          opened.login(
            { user: mailbox, method: 'XOAUTH2', oauth2: new XOAuth2({ user: mailbox, accessToken }) },
            (error) => (error ? reject(error) : resolve()),
          );
        });
        return { user: mailbox };
      },
      (error) => {
        const relayError = smtpError(error);
        return mode === 'app' && refusalsAPermissionCacheExplains.has(relayError.code)
          ? Object.assign(relayError, { remedy: `${relayError.remedy ?? ''}${permissionCacheNote}`.trim() })
          : relayError;
      },
    );
    if (options.sendTo !== undefined) {
      const recipient = options.sendTo;
      await run(
        'test_message',
        async () => {
          const opened = connection as SMTPConnection;
          await limits.reserve(mailbox, { recipients: 1, spaced: false }, CHECK_SLOT_WAIT_MS);
          const raw = await new MailComposer({
            from: route.from,
            ...(route.relation === 'sendOnBehalf' ? { sender: mailbox } : {}),
            to: recipient,
            subject: 'm365-mail-relay connection test',
            text: `This test message was sent by m365-mail-relay from ${route.from}, signed in as ${mailbox}, to check that it can send.`,
          })
            .compile()
            .build();
          const info = await new Promise<{ response: string; messageId?: string }>((resolve, reject) => {
            opened.send({ from: mailbox, to: [recipient] }, raw, (error, result) =>
              error ? reject(error) : resolve(result as { response: string }),
            );
          });
          return { from: route.from, to: recipient, response: info.response };
        },
        (error) => {
          const relayError = smtpError(error);
          return relayError.code === 'send_as_denied' && route.relation !== 'self'
            ? sendAsDenied(relayError, route.from, mailbox, route.relation)
            : relayError;
        },
      );
    }
    connection?.quit();
    releaseSlot?.();
    await slotHeld;
    if (failed) report.ok = false;
  }

  return async function checkConnection(
    address: string,
    options: ConnectionCheckOptions = {},
  ): Promise<ConnectionCheckReport> {
    const route = router.route(address);
    const report: ConnectionCheckReport = {
      mailbox: route.from,
      ok: true,
      relation: route.relation,
      signIn: route.signIn.map((mailbox) => ({
        mailbox,
        mode: modeOf(mailbox),
        ...(route.relation === 'self'
          ? {}
          : {
              requiredRight: {
                right: `${rightName(route.relation)} on ${route.from}`,
                command: grantCommand(route.relation, route.from, mailbox),
              },
            }),
      })),
      warnings: [],
      steps: [],
    };
    // One after the other: each opens its own session, and Exchange counts sessions per mailbox anyway.
    for (const mailbox of route.signIn) await checkSignIn(mailbox, route, options, report);
    return report;
  };
}

/**
 * The admin's request: the mailbox from the route and an optional `{ "sendTo": "<address>" }` body. Both
 * go through the send schema, so they meet the same address checks as any message.
 */
export function parseConnectionCheckRequest(
  mailboxParameter: string,
  body: unknown,
  limits: RelayConfig['limits'],
): { mailbox: string; options: ConnectionCheckOptions } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest([
      { field: '(body)', message: 'must be a JSON object such as {"sendTo": "<address>"}' },
    ]);
  }
  const { sendTo } = body as { sendTo?: unknown };
  const probe = parseSendRequest(
    { from: mailboxParameter, to: sendTo ?? 'nobody@example.invalid', subject: 'test', text: 'test' },
    limits,
  );
  const recipient = sendTo === undefined ? undefined : probe.to[0]?.address;
  return { mailbox: senderMailbox(probe), options: recipient === undefined ? {} : { sendTo: recipient } };
}
