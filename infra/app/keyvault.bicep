// The relay's secret store: RBAC authorization only (no access policies), soft delete and purge
// protection on, because it may hold the app's client secret or certificate and delegated refresh tokens.
param name string
param location string
param tags object = {}
@description('The alert webhook URL (its path is its secret); stored as a secret the app setting references.')
@secure()
param alertWebhookUrl string = ''

resource vault 'Microsoft.KeyVault/vaults@2025-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

var alertWebhookSecretName = 'relay-alert-webhook-url'

resource alertWebhookSecret 'Microsoft.KeyVault/vaults/secrets@2025-05-01' = if (!empty(alertWebhookUrl)) {
  parent: vault
  name: alertWebhookSecretName
  properties: {
    value: alertWebhookUrl
    contentType: 'text/plain'
  }
}

output name string = vault.name
output alertWebhookSecretName string = alertWebhookSecretName
output uri string = vault.properties.vaultUri
