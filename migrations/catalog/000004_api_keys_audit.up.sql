-- Tenant API keys. Only a SHA-256 hash of each key is kept: keys are 256
-- random bits, so a fast hash is enough (there is nothing to brute-force),
-- and the in-memory lookup per request stays cheap. Revoking is deleting.
CREATE TABLE tenant_api_keys (
    id           bigserial   PRIMARY KEY,
    tenant_id    bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text        NOT NULL DEFAULT '',
    -- The first characters of the key, to recognise it in lists.
    prefix       text        NOT NULL,
    hash         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT tenant_api_keys_hash_key UNIQUE (hash),
    CONSTRAINT tenant_api_keys_name_length CHECK (char_length(name) <= 200)
);

CREATE INDEX tenant_api_keys_tenant_id_idx ON tenant_api_keys (tenant_id);

-- Every replica holds the keys in memory; a change (a new key, a
-- revocation) is announced so that it applies on the next request there too.
CREATE FUNCTION notify_api_key_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('api_key_changed', OLD.id::text);
    ELSE
        PERFORM pg_notify('api_key_changed', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

-- Not on UPDATE: last_used_at is flushed in batches and changes nothing
-- that routing needs.
CREATE TRIGGER tenant_api_keys_notify_changed
    AFTER INSERT OR DELETE ON tenant_api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_changed();

-- The audit trail of operator actions. tenant_id is not a foreign key: the
-- trail of a deleted tenant outlives it.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    tenant_id bigint,
    target    text        NOT NULL DEFAULT '',
    -- {"field": {"before": .., "after": ..}} for changes; never a secret.
    diff      jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_tenant_id_idx ON audit_log (tenant_id, id);
