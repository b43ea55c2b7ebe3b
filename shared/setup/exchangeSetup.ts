import type { RelayConfig, SenderRouteRule } from '../config.ts';
import { domainOf } from '../mailAddress.ts';
import { createMailboxDirectory } from '../mailboxes.ts';
import {
  createSenderRouter,
  grantExpression,
  powerShellString as quote,
  rightName,
  type SenderRouter,
} from '../senderRoutes.ts';

/**
 * The Exchange Online half of the setup, written out for the configuration at hand (npm run exchange-setup):
 * the app's service principal, its right to sign in as the app-only mailboxes, the Send As / Send on Behalf
 * rights of RELAY_SENDER_ROUTES and Authenticated SMTP per signing-in mailbox. Every right is checked where
 * Exchange checks it, on the mailbox that signs in (XOAUTH2 `user=`), so that mailbox is always the trustee.
 * Facts encoded here: Microsoft Learn "SMTP App RBAC onboarding", "Role Based Access Control for
 * Applications in Exchange Online" and "Authenticate an IMAP, POP or SMTP connection using OAuth".
 */
export interface ExchangeSetupOptions {
  /** FullAccess per mailbox (needs the Entra SMTP.SendAsApp permission) instead of RBAC for Applications. */
  classic: boolean;
  /** The Enterprise Application's object id (not the App Registration's); a marked placeholder without it. */
  servicePrincipalObjectId?: string;
  /** The mail-enabled security group holding the app-only sign-in mailboxes. */
  groupName?: string;
  /** The management scope over that group. */
  scopeName?: string;
}

export const defaultGroupName = 'm365-mail-relay senders';
export const defaultScopeName = 'm365-mail-relay senders';
export const objectIdPlaceholder = '<object id of the Enterprise Application>';

/** The mailboxes that sign in to Exchange, by how they get their tokens, and the senders no list can name. */
export interface SigningInMailboxes {
  /** Sign in with the app's own token: these need the app's grant in Exchange. */
  appOnly: string[];
  /** Sign in with their own consented token (RELAY_MAILBOXES mode delegated). */
  delegated: string[];
  /** Wildcard caller senders (`*@domain`, `*`) that sign in app-only as themselves, whoever they turn out to be. */
  unlisted: string[];
}

/** One Exchange role assignment name; at most 64 characters, so it is named after the app, not the scope. */
function roleAssignmentName(clientId: string): string {
  return `SMTP.SendAsApp ${clientId}`;
}

const guidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// PowerShell reads the typographic single quotes as quotes too; the group name also ends up inside an OPATH
// filter (its DN), where a quote would end the value.
const namePattern = /^[^'"`\u2018-\u201f\p{Cc}]{1,64}$/u;

function unique(addresses: Iterable<string>): string[] {
  return [...new Set(addresses)];
}

export function signingInMailboxes(
  config: RelayConfig,
  router = createSenderRouter(config.senderRoutes, config.mailboxes),
): SigningInMailboxes {
  const directory = createMailboxDirectory(config.mailboxes, config.delegated.publicBaseUrl);
  // An address signs in only when no route sends it through another mailbox.
  const signsIn = (address: string) => router.route(address).relation === 'self';
  const exactSenders = config.callers
    .flatMap((caller) => caller.senders)
    .filter((sender) => !sender.includes('*'));
  const candidates = unique([
    ...config.mailboxes.map((mailbox) => mailbox.address),
    ...config.senderRoutes.flatMap((rule) => rule.signIn),
    ...exactSenders,
  ]).filter(signsIn);
  const routedDomains = new Set(
    config.senderRoutes.filter((rule) => rule.from.startsWith('*@')).map((rule) => domainOf(rule.from)),
  );
  return {
    appOnly: candidates.filter((address) => directory.modeOf(address) === 'app'),
    delegated: candidates.filter((address) => directory.modeOf(address) === 'delegated'),
    // A wildcard sender at a domain a wildcard route covers is sent through that route's mailboxes.
    unlisted: unique(
      config.callers
        .flatMap((caller) => caller.senders)
        .filter(
          (sender) => sender === '*' || (sender.startsWith('*@') && !routedDomains.has(domainOf(sender))),
        ),
    ),
  };
}

export function exchangeSetupScript(config: RelayConfig, options: ExchangeSetupOptions): string {
  const clientId = config.identity.clientId;
  if (clientId === undefined) throw new Error('RELAY_CLIENT_ID is not set: the script grants that app.');
  const objectId = options.servicePrincipalObjectId ?? objectIdPlaceholder;
  if (options.servicePrincipalObjectId !== undefined && !guidPattern.test(objectId))
    throw new Error(`the object id must be a GUID, not ${objectId}`);
  const groupName = options.groupName ?? defaultGroupName;
  const scopeName = options.scopeName ?? defaultScopeName;
  for (const [what, name] of [
    ['group', groupName],
    ['scope', scopeName],
  ] as const)
    if (!namePattern.test(name)) throw new Error(`the ${what} name must be 1-64 characters without quotes`);

  const router = createSenderRouter(config.senderRoutes, config.mailboxes);
  const mailboxes = signingInMailboxes(config, router);
  const app = quote(clientId);
  const needsApp = mailboxes.appOnly.length > 0 || mailboxes.unlisted.length > 0;
  const signingIn = [...mailboxes.appOnly, ...mailboxes.delegated];
  let section = 0;
  const heading = (title: string) => `# ${++section}. ${title}`;
  const lines = [
    '# m365-mail-relay: the Exchange Online setup for the current configuration (npm run exchange-setup).',
    ...(needsApp
      ? [
          `# It registers the app ${clientId} in Exchange and lets it sign in over SMTP AUTH as the`,
          options.classic
            ? '# app-only mailboxes below (FullAccess on each).'
            : '# app-only mailboxes below and no others (RBAC for Applications, scoped to a group).',
        ]
      : [`# No mailbox signs in app-only, so the app ${clientId} needs no grant in Exchange.`]),
    '# It grants the Send As / Send on Behalf rights of RELAY_SENDER_ROUTES and turns on SMTP AUTH for every',
    '# mailbox that signs in. Run it in Exchange Online PowerShell after Connect-ExchangeOnline, as an Exchange',
    '# administrator. Safe to run twice: each step checks first or changes nothing the second time.',
    '# Print it again after changing RELAY_MAILBOXES, RELAY_SENDER_ROUTES or RELAY_CALLERS.',
    "$ErrorActionPreference = 'Stop'",
    '',
  ];

  if (needsApp) {
    lines.push(
      heading("The app's service principal in Exchange."),
      ...(options.servicePrincipalObjectId === undefined
        ? [
            `# Replace ${objectIdPlaceholder} below with the Enterprise Application's object id, not the`,
            "# App Registration's: Entra admin center > Enterprise applications > the app > Overview > Object ID, or",
            `#   az ad sp show --id ${clientId} --query id -o tsv`,
            '# (or print this script again with --object-id <id>).',
          ]
        : ['# -ObjectId is the object id of the Enterprise Application (not of the App Registration).']),
      `if (-not (Get-ServicePrincipal -Identity ${app} -ErrorAction SilentlyContinue)) {`,
      `  New-ServicePrincipal -AppId ${app} -ObjectId ${quote(objectId)} -DisplayName 'm365-mail-relay'`,
      '}',
      '',
      heading(
        'The mailboxes the app signs in as (XOAUTH2 user=): RELAY_MAILBOXES with mode app, the app-only',
      ),
      '# sign-in mailboxes of RELAY_SENDER_ROUTES, and the exact RELAY_CALLERS senders that sign in as themselves.',
      '$appOnlyMailboxes = @(',
      ...mailboxes.appOnly.map((address) => `  ${quote(address)}`),
      ')',
      ...unlistedSendersNote(mailboxes.unlisted),
      ...(options.classic
        ? fullAccessLines(app)
        : rbacLines(app, roleAssignmentName(clientId), groupName, scopeName)),
      '',
    );
  }

  if (config.senderRoutes.length > 0) {
    lines.push(
      heading('RELAY_SENDER_ROUTES. Exchange checks the right of the mailbox that signs in, app-only and'),
      '# delegated alike, so each sign-in mailbox is the trustee.',
      ...config.senderRoutes.flatMap((rule) => routeLines(rule, router)),
      '',
    );
  }

  lines.push(
    heading('SMTP AUTH for every mailbox that signs in (this overrides the tenant setting for the mailbox;'),
    '# security defaults still block it).',
    ...(signingIn.length === 0 ? ['# None is configured.'] : []),
    ...signingIn.map(
      (address) => `Set-CASMailbox -Identity ${quote(address)} -SmtpClientAuthenticationDisabled $false`,
    ),
  );

  if (!options.classic && mailboxes.appOnly.length > 0) {
    lines.push(
      '',
      heading(
        "The app's scope. Test-ServicePrincipalAuthorization reads the assignments past Exchange's cache,",
      ),
      '# so InScope True can show up to 2 hours before sends work; InScope False: the mailbox is not in the group.',
      ...mailboxes.appOnly.map(
        (address) =>
          `Test-ServicePrincipalAuthorization -Identity ${app} -Resource ${quote(address)} | Format-Table RoleName, AllowedResourceScope, InScope`,
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The grants one route needs: its right on the From address (or each address at its domain), per sign-in mailbox. */
function routeLines(rule: SenderRouteRule, router: SenderRouter): string[] {
  const right = rightName(rule.relation);
  const command = (identity: string, trustee: string) =>
    grantExpression(rule.relation, identity, quote(trustee));
  // Add-RecipientPermission refuses a right that exists; adding to GrantSendOnBehalfTo is idempotent itself.
  const grant = (identity: string, trustee: string): string[] =>
    rule.relation === 'sendAs'
      ? [
          `if (-not (Get-RecipientPermission -Identity ${identity} -Trustee ${quote(trustee)} -AccessRights SendAs -ErrorAction SilentlyContinue)) {`,
          `  ${command(identity, trustee)}`,
          '}',
        ]
      : [command(identity, trustee)];
  const onBehalfNote =
    rule.relation === 'sendOnBehalf' ? ' (the relay adds the Sender: header Exchange requires)' : '';
  if (!rule.from.startsWith('*@')) {
    return [
      `# ${rule.from}: ${right} for ${rule.signIn.join(', ')}${onBehalfNote}`,
      ...rule.signIn.flatMap((trustee) => grant(quote(rule.from), trustee)),
    ];
  }
  // The router sends a listed mailbox as itself and an exactly routed address through its own route.
  const routedElsewhere = router.outsideDomainRoutes();
  const lister = rule.relation === 'sendAs' ? 'Get-Recipient' : 'Get-Mailbox';
  return [
    `# ${rule.from}: ${right} for ${rule.signIn.join(', ')},`,
    `# on each ${rule.relation === 'sendAs' ? 'recipient' : 'mailbox'} with an address at ${domainOf(rule.from)}, except the mailboxes that sign in`,
    '# and the addresses routed on their own. A wildcard cannot be listed ahead: this finds the addresses',
    `# when it runs, so run it again after adding one.${rule.relation === 'sendOnBehalf' ? ' The relay adds the Sender: header Exchange requires.' : ''}`,
    `$routedElsewhere = @(${routedElsewhere.map(quote).join(', ')})`,
    `$recipients = @(${lister} -ResultSize Unlimited | Where-Object {`,
    "  $addresses = @($_.EmailAddresses -like 'smtp:*') -replace '^smtp:', ''",
    `  ($addresses -like ${quote(rule.from)}) -and -not ($addresses | Where-Object { $routedElsewhere -contains $_ })`,
    '})',
    'foreach ($recipient in $recipients) {',
    ...rule.signIn.flatMap((trustee) =>
      grant('$recipient.PrimarySmtpAddress', trustee).map((line) => `  ${line}`),
    ),
    '}',
  ];
}

function unlistedSendersNote(unlisted: readonly string[]): string[] {
  if (unlisted.length === 0) return [];
  return [
    '# RELAY_CALLERS also allows wildcard senders, which sign in app-only as themselves and cannot be listed',
    '# here. Add each mailbox that will really send to $appOnlyMailboxes above; these list the candidates:',
    ...unlisted.map((sender) =>
      sender === '*'
        ? '#   Get-Mailbox -ResultSize Unlimited | Select-Object PrimarySmtpAddress'
        : `#   Get-Recipient -ResultSize Unlimited | Where-Object PrimarySmtpAddress -like ${quote(sender)} | Select-Object PrimarySmtpAddress`,
    ),
  ];
}

function rbacLines(app: string, assignmentName: string, groupName: string, scopeName: string): string[] {
  const group = quote(groupName);
  const scope = quote(scopeName);
  return [
    '',
    '# RBAC for Applications (least privilege): the app may use SMTP.SendAsApp on the members of one group and',
    '# on no other mailbox.',
    '# - Remove the Entra API permission Office 365 Exchange Online > SMTP.SendAsApp from the app registration',
    '#   (and revoke its admin consent): Exchange grants the union of Entra consent and RBAC, so an unscoped',
    '#   Entra grant cancels this scope.',
    '# - Only direct members are in scope: add the mailboxes themselves, never a group that holds them.',
    '# - Exchange caches these grants for 30 minutes to 2 hours: sends can fail with 535 5.7.3 until then.',
    '# - Another assignment of the role to the app without this scope widens it again; list them with',
    "#   Get-ManagementRoleAssignment -Role 'Application SMTP.SendAsApp' | Format-Table Name, RoleAssigneeName, CustomResourceScope",
    `$group = Get-DistributionGroup -Identity ${group} -ErrorAction SilentlyContinue`,
    'if (-not $group) {',
    `  $group = New-DistributionGroup -Name ${group} -Type Security`,
    '}',
    '$memberDns = @(Get-DistributionGroupMember -Identity $group.DistinguishedName -ResultSize Unlimited | ForEach-Object DistinguishedName)',
    '$senderDns = @()',
    'foreach ($mailbox in $appOnlyMailboxes) {',
    '  $mailboxDn = (Get-Recipient -Identity $mailbox).DistinguishedName',
    '  $senderDns += $mailboxDn',
    '  if ($memberDns -notcontains $mailboxDn) {',
    '    Add-DistributionGroupMember -Identity $group.DistinguishedName -Member $mailbox -BypassSecurityGroupManagerCheck',
    '  }',
    '}',
    'foreach ($member in Get-DistributionGroupMember -Identity $group.DistinguishedName -ResultSize Unlimited) {',
    '  if ($senderDns -notcontains $member.DistinguishedName) {',
    '    Write-Warning "$($member.PrimarySmtpAddress) is in the group but not in the configuration: the app can still sign in as it (Remove-DistributionGroupMember revokes that)."',
    '  }',
    '}',
    `if (Get-ManagementScope -Identity ${scope} -ErrorAction SilentlyContinue) {`,
    `  Set-ManagementScope -Identity ${scope} -RecipientRestrictionFilter "MemberOfGroup -eq '$($group.DistinguishedName)'"`,
    '} else {',
    `  New-ManagementScope -Name ${scope} -RecipientRestrictionFilter "MemberOfGroup -eq '$($group.DistinguishedName)'"`,
    '}',
    `if (-not (Get-ManagementRoleAssignment -Identity ${quote(assignmentName)} -ErrorAction SilentlyContinue)) {`,
    `  New-ManagementRoleAssignment -Name ${quote(assignmentName)} -App ${app} -Role 'Application SMTP.SendAsApp' -CustomResourceScope ${scope}`,
    '}',
  ];
}

function fullAccessLines(app: string): string[] {
  return [
    '',
    "# Classic: FullAccess for the app's service principal on each mailbox. This path needs the Entra API",
    '# permission Office 365 Exchange Online > SMTP.SendAsApp with admin consent. FullAccess also opens the',
    '# mailbox contents to the app; RBAC for Applications (without --classic) grants only SMTP sending.',
    `$servicePrincipal = Get-ServicePrincipal -Identity ${app}`,
    'foreach ($mailbox in $appOnlyMailboxes) {',
    "  if (-not (Get-MailboxPermission -Identity $mailbox -User $servicePrincipal.Identity -ErrorAction SilentlyContinue | Where-Object { $_.AccessRights -match 'FullAccess' })) {",
    '    Add-MailboxPermission -Identity $mailbox -User $servicePrincipal.Identity -AccessRights FullAccess',
    '  }',
    '}',
  ];
}
