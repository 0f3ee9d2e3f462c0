-- The tenant catalog: one row per customer account. The control plane routes
-- every tenant request through this table (cached in memory), so its
-- uniqueness rules are enforced here, by indexes, and not only in Go: two
-- concurrent creates of the same slug or domain resolve to exactly one row.
CREATE SEQUENCE tenant_versions;

CREATE TABLE tenants (
    id             bigserial PRIMARY KEY,
    name           text        NOT NULL,
    slug           text        NOT NULL,
    domain         text        NOT NULL,
    status         text        NOT NULL DEFAULT 'active',
    timezone       text        NOT NULL DEFAULT 'UTC',
    max_extensions integer     NOT NULL DEFAULT 100,
    settings       jsonb       NOT NULL DEFAULT '[]',
    -- isolation and db_name are fixed at creation: db_name is derived from the
    -- immutable id (never from user text), so renaming a tenant never moves
    -- or renames its data.
    isolation      text        NOT NULL,
    db_name        text        NOT NULL,
    provisioning   text        NOT NULL DEFAULT 'pending',
    schema_version bigint      NOT NULL DEFAULT 0,
    last_error     text        NOT NULL DEFAULT '',
    -- Set from one catalog-wide sequence by every write: the in-memory
    -- tenant cache keeps the highest version it has seen, so an older write
    -- can never overwrite a newer one, of this tenant or of another tenant
    -- that took over its slug or domain.
    version        bigint      NOT NULL DEFAULT nextval('tenant_versions'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT tenants_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) <= 63),
    -- Domains are stored lower-case; the unique index below is on lower()
    -- as well so that even a row written around the API cannot duplicate one.
    CONSTRAINT tenants_domain_lower CHECK (domain = lower(domain)),
    CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended')),
    CONSTRAINT tenants_max_extensions_range CHECK (max_extensions BETWEEN 0 AND 100000),
    CONSTRAINT tenants_settings_array CHECK (jsonb_typeof(settings) = 'array'),
    CONSTRAINT tenants_isolation_check CHECK (isolation IN ('database', 'schema')),
    CONSTRAINT tenants_provisioning_check CHECK (provisioning IN ('pending', 'ready', 'failed', 'deleting'))
);

CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);
CREATE UNIQUE INDEX tenants_domain_key ON tenants (lower(domain));
-- Two catalogs may share a tenant server only with different name prefixes;
-- within one catalog a database/schema name belongs to exactly one tenant.
CREATE UNIQUE INDEX tenants_db_name_key ON tenants (db_name);
-- The reconciler looks for unfinished work at every start.
CREATE INDEX tenants_provisioning_idx ON tenants (provisioning) WHERE provisioning <> 'ready';

-- Every committed change of a tenant is announced to every control plane
-- listening (LISTEN tenant_changed), which reloads that tenant into its
-- in-memory routing cache: replicas stay coherent without a query per
-- request. The payload is the tenant id only.
CREATE FUNCTION notify_tenant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tenant_changed', OLD.id::text);
    ELSE
        PERFORM pg_notify('tenant_changed', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify_changed
    AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();

-- The catalog's identity. Every tenant database or schema this catalog
-- creates is marked with it (COMMENT ON), so the provisioner never adopts,
-- nor drops, a database of the same name that another catalog (or an older
-- incarnation of this one) left on the server.
CREATE TABLE catalog_identity (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO catalog_identity DEFAULT VALUES;
