DROP INDEX IF EXISTS tenants_schema_version_idx;
ALTER TABLE tenants
    DROP COLUMN IF EXISTS schema_dirty,
    DROP COLUMN IF EXISTS migrated_at,
    DROP COLUMN IF EXISTS migration_error;
