import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadConfig, settingNames } from '../../../shared/config.ts';
import { exchangeSetupScript, objectIdPlaceholder } from '../../../shared/setup/exchangeSetup.ts';
import { sha256 } from '../../../shared/sha256.ts';

/**
 * npm run exchange-setup: the PowerShell an Exchange administrator runs for the configuration at hand. The
 * tests read the emitted commands as the administrator would, for a tenant with app-only and delegated
 * mailboxes, a Send As route, a Send on Behalf route, a pool of three sign-in mailboxes for a whole domain,
 * and callers allowed exact and wildcard senders.
 */
const root = new URL('../../..', import.meta.url).pathname;
const appId = '11111111-2222-3333-4444-555555555555';
const enterpriseAppObjectId = '99999999-8888-7777-6666-555555555555';
const callerKeyHashes = [sha256('caller-key-billing'), sha256('caller-key-notices')];

const settings = {
  RELAY_CLIENT_ID: appId,
  RELAY_TENANT_ID: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
  RELAY_MAILBOXES: JSON.stringify([
    { address: 'relay@contoso.com', mode: 'app' },
    { address: 'assistant@contoso.com', mode: 'delegated' },
    { address: 'relay1@contoso.com', mode: 'app' },
    { address: 'relay2@contoso.com', mode: 'app' },
    { address: 'relay3@contoso.com', mode: 'app' },
    { address: 'reports@contoso.com', mode: 'app' },
    { address: 'owner@contoso.com', mode: 'delegated' },
  ]),
  RELAY_SENDER_ROUTES: JSON.stringify([
    { from: 'team@contoso.com', signIn: ['relay@contoso.com'], relation: 'sendAs' },
    { from: 'ceo@contoso.com', signIn: ['assistant@contoso.com'], relation: 'sendOnBehalf' },
    {
      from: '*@notify.contoso.com',
      signIn: ['relay1@contoso.com', 'relay2@contoso.com', 'relay3@contoso.com'],
      relation: 'sendAs',
    },
  ]),
  RELAY_CALLERS: JSON.stringify([
    {
      name: 'billing',
      keySha256: callerKeyHashes[0],
      // Unlisted and unrouted: signs in app-only as itself. Routed, delegated: sign in as someone else.
      senders: ['alerts@contoso.com', 'team@contoso.com', 'owner@contoso.com', '*@fabrikam.com'],
    },
    { name: 'notices', keySha256: callerKeyHashes[1], senders: ['*@notify.contoso.com', 'ceo@contoso.com'] },
  ]),
};
const config = loadConfig({ ...settings });
const appOnlySignIns = [
  'alerts@contoso.com',
  'relay1@contoso.com',
  'relay2@contoso.com',
  'relay3@contoso.com',
  'relay@contoso.com',
  'reports@contoso.com',
];
const delegatedSignIns = ['assistant@contoso.com', 'owner@contoso.com'];

/** The addresses of the `$appOnlyMailboxes = @( ... )` list. */
function appOnlyList(script: string): string[] {
  const list = /^\$appOnlyMailboxes = @\(\n((?:\s+'[^']+'\n)*)\)$/m.exec(script);
  expect(list, 'the script lists the app-only mailboxes').not.toBeNull();
  return [...(list?.[1] ?? '').matchAll(/'([^']+)'/g)].map((match) => match[1] ?? '').sort();
}

function commands(script: string, cmdlet: string): string[] {
  return script
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith(`${cmdlet} `));
}

function parameter(command: string, name: string): string | undefined {
  return new RegExp(`-${name} '([^']*)'`).exec(command)?.[1];
}

describe('exchangeSetupScript (RBAC for Applications, the default)', () => {
  const script = exchangeSetupScript(config, {
    classic: false,
    servicePrincipalObjectId: enterpriseAppObjectId,
  });

  it('says what it does, where to run it, and that it is safe to run twice', () => {
    const header = script.split('\n').slice(0, 8).join('\n');
    expect(header).toContain('Connect-ExchangeOnline');
    expect(header).toContain('Safe to run twice');
    expect(header).toContain(appId);
  });

  it('registers the service principal with the Enterprise Application object id, only when Exchange has none', () => {
    expect(script).toContain(
      `if (-not (Get-ServicePrincipal -Identity '${appId}' -ErrorAction SilentlyContinue)) {\n  New-ServicePrincipal -AppId '${appId}' -ObjectId '${enterpriseAppObjectId}'`,
    );
  });

  it('marks the object id as a placeholder, and says where to find it, when none is given', () => {
    const withoutObjectId = exchangeSetupScript(config, { classic: false });
    expect(commands(withoutObjectId, 'New-ServicePrincipal')[0]).toContain(
      `-ObjectId '${objectIdPlaceholder}'`,
    );
    expect(withoutObjectId).toContain('Enterprise applications > the app > Overview > Object ID');
    expect(withoutObjectId).toContain(`az ad sp show --id ${appId} --query id -o tsv`);
  });

  it('makes exactly the app-only sign-in mailboxes direct members of a mail-enabled security group', () => {
    expect(appOnlyList(script)).toEqual(appOnlySignIns);
    expect(commands(script, '$group = New-DistributionGroup')).toEqual([
      "$group = New-DistributionGroup -Name 'm365-mail-relay senders' -Type Security",
    ]);
    expect(script).toContain('foreach ($mailbox in $appOnlyMailboxes) {');
    expect(commands(script, 'Add-DistributionGroupMember')).toEqual([
      'Add-DistributionGroupMember -Identity $group.DistinguishedName -Member $mailbox -BypassSecurityGroupManagerCheck',
    ]);
    expect(script).toContain('if ($memberDns -notcontains $mailboxDn) {');
  });

  it('scopes the role assignment to the group and names the app', () => {
    expect(script).toContain(
      `New-ManagementScope -Name 'm365-mail-relay senders' -RecipientRestrictionFilter "MemberOfGroup -eq '$($group.DistinguishedName)'"`,
    );
    const [assignment, ...others] = commands(script, 'New-ManagementRoleAssignment');
    expect(others).toEqual([]);
    expect(parameter(assignment ?? '', 'App')).toBe(appId);
    expect(parameter(assignment ?? '', 'Role')).toBe('Application SMTP.SendAsApp');
    expect(parameter(assignment ?? '', 'CustomResourceScope')).toBe('m365-mail-relay senders');
  });

  it('uses the group and scope names it is given', () => {
    const named = exchangeSetupScript(config, {
      classic: false,
      groupName: 'Relay senders',
      scopeName: 'Relay scope',
    });
    expect(named).toContain("New-DistributionGroup -Name 'Relay senders' -Type Security");
    expect(named).toContain("New-ManagementScope -Name 'Relay scope'");
    expect(parameter(commands(named, 'New-ManagementRoleAssignment')[0] ?? '', 'CustomResourceScope')).toBe(
      'Relay scope',
    );
  });

  it('warns of the traps: the Entra permission, direct members only, the propagation delay', () => {
    expect(script).toMatch(/Remove the Entra API permission .*SMTP\.SendAsApp/);
    expect(script).toContain('union of Entra consent and RBAC');
    expect(script).toContain('Only direct members are in scope');
    expect(script).toContain('30 minutes to 2 hours');
  });

  it('tests each app-only mailbox with Test-ServicePrincipalAuthorization, which bypasses the cache', () => {
    const tests = commands(script, 'Test-ServicePrincipalAuthorization');
    expect(tests.map((line) => parameter(line, 'Resource')).sort()).toEqual(appOnlySignIns);
    for (const line of tests) expect(parameter(line, 'Identity')).toBe(appId);
    expect(script).toMatch(/Test-ServicePrincipalAuthorization reads the assignments past Exchange's cache/);
  });

  it('grants every route its right on the From address, with the sign-in mailbox as trustee', () => {
    expect(script).toContain(
      "if (-not (Get-RecipientPermission -Identity 'team@contoso.com' -Trustee 'relay@contoso.com' -AccessRights SendAs -ErrorAction SilentlyContinue)) {\n  Add-RecipientPermission -Identity 'team@contoso.com' -Trustee 'relay@contoso.com' -AccessRights SendAs -Confirm:$false",
    );
    expect(commands(script, 'Set-Mailbox')).toEqual([
      "Set-Mailbox -Identity 'ceo@contoso.com' -GrantSendOnBehalfTo @{Add='assistant@contoso.com'}",
    ]);
    const grants = commands(script, 'Add-RecipientPermission');
    const pool = grants.filter((line) => line.includes('-Identity $recipient.PrimarySmtpAddress'));
    expect(pool.map((line) => parameter(line, 'Trustee'))).toEqual([
      'relay1@contoso.com',
      'relay2@contoso.com',
      'relay3@contoso.com',
    ]);
    // The app itself is never the trustee: Exchange checks the mailbox that signs in.
    for (const line of grants) expect(parameter(line, 'Trustee')).not.toBe(appId);
  });

  it('grants a wildcard route on each recipient at its domain found at run time, leaving out the sign-in mailboxes', () => {
    expect(script).toContain("($addresses -like '*@notify.contoso.com')");
    const routedElsewhere = /^\$routedElsewhere = @\((.*)\)$/m.exec(script)?.[1] ?? '';
    for (const mailbox of ['relay1@contoso.com', 'relay2@contoso.com', 'relay3@contoso.com'])
      expect(routedElsewhere).toContain(`'${mailbox}'`);
    expect(script).toContain('foreach ($recipient in $recipients) {');
  });

  it('turns on SMTP AUTH for every mailbox that signs in, app-only and delegated, and for no other', () => {
    const identities = commands(script, 'Set-CASMailbox').map((line) => parameter(line, 'Identity'));
    expect(identities.sort()).toEqual([...appOnlySignIns, ...delegatedSignIns].sort());
    for (const line of commands(script, 'Set-CASMailbox'))
      expect(line).toContain('-SmtpClientAuthenticationDisabled $false');
  });

  it('names the wildcard caller senders it cannot list, with a command that lists the candidates', () => {
    expect(script).toContain("Where-Object PrimarySmtpAddress -like '*@fabrikam.com'");
    // *@notify.contoso.com is sent through its route's pool, which the script grants.
    expect(script).not.toContain("Where-Object PrimarySmtpAddress -like '*@notify.contoso.com'");
  });

  it('prints no caller key hash', () => {
    for (const hash of callerKeyHashes) expect(script).not.toContain(hash);
    expect(script).not.toMatch(/[0-9a-f]{64}/i);
  });
});

describe('exchangeSetupScript (classic)', () => {
  const script = exchangeSetupScript(config, {
    classic: true,
    servicePrincipalObjectId: enterpriseAppObjectId,
  });

  it('grants the service principal FullAccess on each app-only mailbox, unless it holds it already', () => {
    expect(appOnlyList(script)).toEqual(appOnlySignIns);
    expect(script).toContain(`$servicePrincipal = Get-ServicePrincipal -Identity '${appId}'`);
    expect(script).toContain(
      "if (-not (Get-MailboxPermission -Identity $mailbox -User $servicePrincipal.Identity -ErrorAction SilentlyContinue | Where-Object { $_.AccessRights -match 'FullAccess' })) {",
    );
    expect(commands(script, 'Add-MailboxPermission')).toEqual([
      'Add-MailboxPermission -Identity $mailbox -User $servicePrincipal.Identity -AccessRights FullAccess',
    ]);
    expect(script).toMatch(
      /needs the Entra API\n# permission Office 365 Exchange Online > SMTP\.SendAsApp with admin consent/,
    );
  });

  it('creates no group, scope or role assignment', () => {
    for (const cmdlet of [
      'New-ManagementScope',
      'New-ManagementRoleAssignment',
      '$group = New-DistributionGroup',
      'Test-ServicePrincipalAuthorization',
    ])
      expect(commands(script, cmdlet)).toEqual([]);
  });

  it('still grants the routes and turns on SMTP AUTH, and prints no caller key hash', () => {
    expect(commands(script, 'Add-RecipientPermission')).toHaveLength(4);
    expect(commands(script, 'Set-CASMailbox')).toHaveLength(appOnlySignIns.length + delegatedSignIns.length);
    for (const hash of callerKeyHashes) expect(script).not.toContain(hash);
  });
});

describe('exchangeSetupScript (edge cases)', () => {
  it('asks nothing of the app when every mailbox signs in delegated', () => {
    const delegatedOnly = loadConfig({
      RELAY_CLIENT_ID: appId,
      RELAY_MAILBOXES: JSON.stringify([{ address: 'assistant@contoso.com', mode: 'delegated' }]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: 'ceo@contoso.com', signIn: ['assistant@contoso.com'], relation: 'sendOnBehalf' },
      ]),
    });
    const script = exchangeSetupScript(delegatedOnly, { classic: false });
    expect(commands(script, 'New-ServicePrincipal')).toEqual([]);
    expect(script).not.toContain('$appOnlyMailboxes');
    expect(commands(script, 'Set-Mailbox')).toHaveLength(1);
    expect(commands(script, 'Set-CASMailbox').map((line) => parameter(line, 'Identity'))).toEqual([
      'assistant@contoso.com',
    ]);
  });

  it('grants a wildcard Send on Behalf route on the mailboxes at its domain', () => {
    const onBehalfPool = loadConfig({
      RELAY_CLIENT_ID: appId,
      RELAY_MAILBOXES: JSON.stringify([{ address: 'desk@contoso.com', mode: 'app' }]),
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: '*@execs.contoso.com', signIn: ['desk@contoso.com'], relation: 'sendOnBehalf' },
      ]),
    });
    const script = exchangeSetupScript(onBehalfPool, { classic: false });
    expect(script).toContain('$recipients = @(Get-Mailbox -ResultSize Unlimited | Where-Object {');
    expect(commands(script, 'Set-Mailbox')).toEqual([
      "Set-Mailbox -Identity $recipient.PrimarySmtpAddress -GrantSendOnBehalfTo @{Add='desk@contoso.com'}",
    ]);
  });

  it('refuses an object id that is not a GUID and names that would break the quoting', () => {
    expect(() =>
      exchangeSetupScript(config, { classic: false, servicePrincipalObjectId: "x'; Remove-Mailbox" }),
    ).toThrow(/GUID/);
    expect(() => exchangeSetupScript(config, { classic: false, groupName: "O'Brien senders" })).toThrow(
      /quotes/,
    );
    expect(() => exchangeSetupScript(config, { classic: false, scopeName: '' })).toThrow(/1-64 characters/);
  });

  it('refuses a configuration without RELAY_CLIENT_ID', () => {
    expect(() => exchangeSetupScript(loadConfig({}), { classic: false })).toThrow(/RELAY_CLIENT_ID/);
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node scripts/exchange-setup.ts`, with only `given` set: every other setting is blank in the environment,
 * which wins over a developer's local.settings.json, so the run does not depend on that file. */
function runExchangeSetup(given: Record<string, string>, args: string[] = []): Promise<Run> {
  const blank = Object.fromEntries(settingNames.map((name) => [name, '']));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['scripts/exchange-setup.ts', ...args],
      { cwd: root, env: { PATH: process.env.PATH, ...blank, ...given } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('npm run exchange-setup', () => {
  it('prints the script for the settings in the environment', async () => {
    const run = await runExchangeSetup(settings, ['--object-id', enterpriseAppObjectId]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.split('\n')).toContain(
      `  New-ServicePrincipal -AppId '${appId}' -ObjectId '${enterpriseAppObjectId}' -DisplayName 'm365-mail-relay'`,
    );
    expect(run.stdout).toBe(
      exchangeSetupScript(config, { classic: false, servicePrincipalObjectId: enterpriseAppObjectId }),
    );
  });

  it('prints the classic script with --classic', async () => {
    const run = await runExchangeSetup(settings, ['--classic']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Add-MailboxPermission -Identity $mailbox');
    expect(run.stdout).not.toContain('New-ManagementScope');
  });

  it('exits 2 and names the problem when RELAY_SENDER_ROUTES is wrong', async () => {
    const run = await runExchangeSetup({
      ...settings,
      RELAY_SENDER_ROUTES: JSON.stringify([
        { from: 'sales@contoso.com', signIn: ['nobody@contoso.com'], relation: 'sendAs' },
      ]),
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      'RELAY_SENDER_ROUTES at 0: sign-in mailbox nobody@contoso.com is not listed in RELAY_MAILBOXES',
    );
  });

  it('exits 2 with a clear message when RELAY_CLIENT_ID is missing', async () => {
    const run = await runExchangeSetup({ ...settings, RELAY_CLIENT_ID: '' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('RELAY_CLIENT_ID is not set');
  });
});
