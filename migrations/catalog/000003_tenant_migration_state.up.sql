-- What the fleet migrator knows of each tenant, so that the fleet's state is
-- one query away and a no-op run skips tenants without opening them.
-- schema_version (000001) is the version of the tenant's own migrations
-- table as last seen; schema_dirty mirrors its dirty flag.
ALTER TABLE tenants
    ADD COLUMN schema_dirty     boolean     NOT NULL DEFAULT false,
    ADD COLUMN migrated_at      timestamptz,
    ADD COLUMN migration_error  text        NOT NULL DEFAULT '';

CREATE INDEX tenants_schema_version_idx ON tenants (schema_version);
