targetScope = 'subscription'

// m365-mail-relay on Azure Functions Flex Consumption: `azd up` creates everything below in one resource
// group. Layout and naming follow the Azure-Samples Functions azd quickstarts (abbreviations.json,
// resourceToken, app/ modules); resources are declared directly so the template needs no registry access.

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name the resource group and derive a unique token.')
param environmentName string

@minLength(1)
@description('Region for all resources; it must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the user running azd: gets Key Vault Secrets Officer to store credentials. Empty to skip.')
param principalId string = ''

@description('Application (client) ID of the Entra app registration the relay signs in as (RELAY_CLIENT_ID). Empty until the app is registered.')
param entraClientId string = ''

@description('Directory (tenant) ID of that app registration (RELAY_TENANT_ID); empty means the tenant of this subscription.')
param entraTenantId string = ''

@description('How the app proves itself to Entra ID for app-only sending: federated (the managed identity, no secret), certificate or secret (both stored in Key Vault).')
@allowed([
  'federated'
  'certificate'
  'secret'
])
param credentialType string = 'federated'

@description('JSON array of callers: [{ "name", "keySha256", "senders": [...] }] (npm run caller-key creates entries).')
param relayCallers string = '[]'

@description('RELAY_MAILBOXES: JSON array of { "address", "mode": "app" | "delegated" }.')
param relayMailboxes string = '[]'

@description('RELAY_SENDER_ROUTES: JSON array of { "from", "signIn": [...], "relation": "sendAs" | "sendOnBehalf" }.')
param relaySenderRoutes string = '[]'

@description('Exchange Online SMTP AUTH endpoint; smtp.office365.us for GCC High.')
param smtpHost string = 'smtp.office365.com'

@description('App-only token scope: the Exchange Online resource of this cloud + /.default.')
param smtpScope string = 'https://outlook.office365.com/.default'

@description('Extra trusted CA certificate (PEM) for networks that inspect TLS; usually empty.')
param smtpExtraCa string = ''

@description('RELAY_ALERT_WEBHOOK_URL: a Teams workflow or Slack incoming webhook for health alerts; kept in Key Vault. Empty for none.')
@secure()
param alertWebhookUrl string = ''

@description('RELAY_ALERT_EMAIL: also mail each health alert to this address. Empty for none.')
param alertEmail string = ''

@description('Further app settings merged over the template\'s, e.g. { "RELAY_MAX_RECIPIENTS": "200" }.')
param additionalAppSettings object = {}

// Flex Consumption accepts 40 to 1000. The per-mailbox limits (3 SMTP sessions, messages a minute, recipients
// a day) live in the storage account and hold over any number of instances: README "Exchange Online limits".
@description('Most instances the Flex Consumption plan may scale out to (40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

// 2048 MB: the benchmark's 200 concurrent sends with 1 MB attachments peak near 750 MB (README "Performance").
@description('Memory of each Flex Consumption instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}relay-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var tenantId = empty(entraTenantId) ? tenant().tenantId : entraTenantId

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity './app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}relay-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring './app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault './app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    alertWebhookUrl: alertWebhookUrl
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
  }
}

module relay './app/relay.bicep' = {
  name: 'relay'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planName: '${abbrs.webServerFarms}${resourceToken}'
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    keyVaultUrl: keyVault.outputs.uri
    entraTenantId: tenantId
    entraClientId: entraClientId
    credentialType: credentialType
    relayCallers: relayCallers
    relayMailboxes: relayMailboxes
    relaySenderRoutes: relaySenderRoutes
    smtpHost: smtpHost
    smtpScope: smtpScope
    smtpExtraCa: smtpExtraCa
    // Without a version the reference follows the secret's latest one.
    alertWebhookSecretUri: empty(alertWebhookUrl) ? '' : '${keyVault.outputs.uri}secrets/${keyVault.outputs.alertWebhookSecretName}'
    alertEmail: alertEmail
    additionalAppSettings: additionalAppSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The host reads its storage as the identity: roles first, or the first start fails.
  dependsOn: [
    rbac
  ]
}

// What the next steps in docs/deploy.md need; azd stores these in the environment (azd env get-values).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_RELAY_NAME string = relay.outputs.name
output AZURE_FUNCTION_APP_NAME string = relay.outputs.name
output RELAY_URL string = relay.outputs.uri
output RELAY_OAUTH_REDIRECT_URI string = '${relay.outputs.uri}/api/oauth/callback'
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ENTRA_APP_TENANT_ID string = tenantId
output FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
output FEDERATED_CREDENTIAL_SUBJECT string = identity.outputs.principalId
output FEDERATED_CREDENTIAL_AUDIENCE string = relay.outputs.federatedTokenAudience
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
