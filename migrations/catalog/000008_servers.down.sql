-- Forgets every registered server and which server each tenant is on. The
-- tenant databases stay where they are; a release before this one knows
-- only TENANT_DATABASE_URL's server.
DROP INDEX IF EXISTS tenants_server_idx;
ALTER TABLE tenant_spares DROP COLUMN IF EXISTS server;
ALTER TABLE tenants DROP COLUMN IF EXISTS server;
DROP TABLE IF EXISTS servers;
