-- Spare tenant databases (database mode): made ahead of time, in the
-- background, so that creating a tenant claims one instead of cloning the
-- template while the client waits. A spare takes its id from the tenants'
-- id sequence, so its database and role are already named as the tenant
-- that claims it will be; claiming moves the id from this table to tenants
-- in one statement, so a spare belongs to exactly one tenant or to none.
--
-- A row is written before anything is made on the tenant server, in state
-- 'making', while its maker holds the id's lifecycle lock; it turns 'ready'
-- once the database is complete. A 'making' row whose lock is free belongs
-- to a maker that died: the spares reconciler drops what it left. Spares
-- are never tenants: nothing that lists, routes or migrates tenants reads
-- this table.
CREATE TABLE tenant_spares (
    id         bigint      PRIMARY KEY,
    db_name    text        NOT NULL UNIQUE,
    -- The template database it was cloned from (its name carries the
    -- migration version and a digest of the history): only spares of the
    -- current template are claimed; the reconciler drops the others.
    template   text        NOT NULL,
    state      text        NOT NULL DEFAULT 'making',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_spares_state_check CHECK (state IN ('making', 'ready'))
);

CREATE INDEX tenant_spares_claim_idx ON tenant_spares (template, id) WHERE state = 'ready';
