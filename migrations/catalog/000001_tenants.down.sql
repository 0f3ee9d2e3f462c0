DROP TABLE IF EXISTS catalog_identity;
DROP TABLE IF EXISTS tenants;
