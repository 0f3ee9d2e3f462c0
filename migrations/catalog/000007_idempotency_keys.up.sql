-- Idempotency keys of POST /api/tenants (docs/API.md): what a create sent
-- with an Idempotency-Key header came to, so that a retry with the same key
-- gets that outcome again instead of a second tenant or a 409 for its slug.
--
-- A key belongs to whoever sent it (the actor the audit trail names): two
-- actors may use the same key for different creates. A row is written in
-- the statement that inserts the tenant, so there is never a tenant without
-- the key that made it, nor a key whose tenant was not made; a request that
-- fails before that point with a client error (422, 409 for a taken slug)
-- stores that error instead. Server errors are not stored: a retry tries
-- again. Rows expire after a day (the server deletes old ones as it goes).
CREATE TABLE idempotency_keys (
    actor       text        NOT NULL,
    key         text        NOT NULL,
    -- SHA-256 of the normalised request: the same key with another body is
    -- refused rather than answered with the first body's outcome.
    fingerprint bytea       NOT NULL,
    -- The tenant the create inserted, whatever became of its provisioning:
    -- a retry answers with the tenant as it is then. Not a foreign key: a
    -- retry after the tenant was deleted must learn that, not create it
    -- again, and tenant ids are never reused.
    tenant_id   bigint,
    -- Or the client error the create answered, {"code", "message",
    -- "fields"}: never a secret (no key, no password, no token).
    error       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key),
    CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_fingerprint_length CHECK (octet_length(fingerprint) = 32),
    CONSTRAINT idempotency_keys_one_outcome CHECK ((tenant_id IS NULL) <> (error IS NULL))
);

-- Expired rows are found by age.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- The control plane's role owns it; nobody else reads it.
REVOKE ALL ON idempotency_keys FROM PUBLIC;
