DROP TABLE IF EXISTS catalog_identity;
DROP TABLE IF EXISTS tenants;
DROP FUNCTION IF EXISTS notify_tenant_changed();
DROP SEQUENCE IF EXISTS tenant_versions;
