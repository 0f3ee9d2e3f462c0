-- This loses the generated role secret. A binary of the previous version
-- derives tenant role passwords from the catalog's identity again: run its
-- `controlplane tenants rotate-role-passwords` (docs/OPERATIONS.md).
DROP TABLE IF EXISTS tenant_role_passwords;
DROP TABLE IF EXISTS tenant_role_secret;
