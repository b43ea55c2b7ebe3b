// The Function App's user-assigned identity: it reads the host storage, the Key Vault secrets, publishes
// telemetry, and (credential type federated) is trusted by the Entra app registration as its credential.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output resourceId string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
