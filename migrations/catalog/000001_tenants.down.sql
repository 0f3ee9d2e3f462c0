DROP TABLE IF EXISTS catalog_identity;
DROP TABLE IF EXISTS tenants;
DROP SEQUENCE IF EXISTS tenant_versions;
