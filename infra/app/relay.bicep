// The Function App on the Flex Consumption plan (Linux, Node 22), running as the user-assigned identity,
// and every app setting the relay reads (shared/config.ts settingNames). Settings not listed here keep the
// relay's own defaults; test/infra/template.test.ts keeps this list, the config loader and
// local.settings.sample.json in step. Flex Consumption takes the runtime, the instance size and the scale
// limit from functionAppConfig, so FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and
// functionAppScaleLimit must not be set.
param name string
param location string
param tags object = {}
param planName string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param identityId string
param identityClientId string
param keyVaultUrl string
param entraTenantId string
param entraClientId string
param credentialType string
param relayCallers string
@description('RELAY_MAILBOXES: JSON array of { address, mode } for delegated mailboxes.')
param relayMailboxes string = '[]'
@description('RELAY_SENDER_ROUTES: JSON array of { from, signIn, relation } (Send As, Send on Behalf, pools).')
param relaySenderRoutes string = '[]'
param smtpHost string
param smtpScope string
param smtpExtraCa string
@description('Key Vault secret URI of the alert webhook URL; empty for no webhook.')
param alertWebhookSecretUri string = ''
param alertEmail string = ''
param additionalAppSettings object = {}
param maximumInstanceCount int
param instanceMemoryMB int

var loginEndpoint = environment().authentication.loginEndpoint
// Entra's audience for federated credentials differs per cloud.
var federatedTokenAudience = environment().name == 'AzureUSGovernment'
  ? 'api://AzureADTokenExchangeUSGov'
  : environment().name == 'AzureChinaCloud' ? 'api://AzureADTokenExchangeChina' : 'api://AzureADTokenExchange'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'relay' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references in app settings (the alert webhook) resolve as the user-assigned identity.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'node'
        version: '22'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(
      {
        // The Functions host: identity-based storage and telemetry, no keys or connection secrets. Blobs
        // (keys, timer leases), queues (the relay-send trigger) and tables, each by its endpoint, which is
        // right in every cloud.
        AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
        AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
        AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
        AzureWebJobsStorage__credential: 'managedidentity'
        AzureWebJobsStorage__clientId: identityClientId
        APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
        // The relay (shared/config.ts).
        RELAY_TENANT_ID: entraTenantId
        RELAY_CLIENT_ID: entraClientId
        RELAY_AUTHORITY_HOST: endsWith(loginEndpoint, '/') ? take(loginEndpoint, length(loginEndpoint) - 1) : loginEndpoint
        RELAY_CREDENTIAL_TYPE: credentialType
        RELAY_CLIENT_SECRET_NAME: 'relay-client-secret'
        RELAY_CLIENT_CERTIFICATE_NAME: 'relay-client-certificate'
        RELAY_MANAGED_IDENTITY_CLIENT_ID: identityClientId
        RELAY_FEDERATED_TOKEN_AUDIENCE: federatedTokenAudience
        RELAY_KEY_VAULT_URL: keyVaultUrl
        RELAY_SMTP_HOST: smtpHost
        RELAY_SMTP_SCOPE: smtpScope
        RELAY_SMTP_EXTRA_CA: smtpExtraCa
        RELAY_CALLERS: relayCallers
        RELAY_MAILBOXES: relayMailboxes
        RELAY_SENDER_ROUTES: relaySenderRoutes
        // Resolved by the platform from Key Vault as the identity (keyVaultReferenceIdentity).
        RELAY_ALERT_WEBHOOK_URL: empty(alertWebhookSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${alertWebhookSecretUri})'
        RELAY_ALERT_EMAIL: alertEmail
        // Queued sending and idempotency keys: the same account as the host, signed in as the identity
        // (the account has no shared keys). The queue trigger's connection reads these settings too.
        RELAY_STORAGE_CONNECTION__accountName: storage.name
        RELAY_STORAGE_CONNECTION__credential: 'managedidentity'
        RELAY_STORAGE_CONNECTION__clientId: identityClientId
        // The OAuth redirect URI is derived from this, never from request headers.
        RELAY_PUBLIC_BASE_URL: 'https://${functionApp.properties.defaultHostName}'
      },
      additionalAppSettings
    )
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
output federatedTokenAudience string = federatedTokenAudience
