-- The global index of DID numbers: which tenant owns +15551234567 and where
-- an inbound call to it goes. The SIP edge asks it once per call, so it is
-- one primary-key probe. A number belongs to one tenant: the primary key
-- decides a race between two tenants claiming it.
--
-- The DID itself lives in the tenant's database (where foreign keys check
-- its target). The two are kept consistent by writing the index first, in a
-- state that says a change is in flight, then the tenant database, then
-- settling the index; a crash in between leaves a row that is not 'active',
-- which the reconciler settles from the tenant database. So there is never a
-- DID in a tenant database without its index row.
CREATE TABLE did_numbers (
    number      text        PRIMARY KEY,
    tenant_id   bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    target_type text        NOT NULL DEFAULT 'none',
    target_id   bigint,
    state       text        NOT NULL DEFAULT 'creating',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT did_numbers_number_format CHECK (number ~ '^\+[1-9][0-9]{1,14}$'),
    CONSTRAINT did_numbers_target_type_check CHECK (target_type IN ('none', 'extension', 'queue')),
    CONSTRAINT did_numbers_state_check CHECK (state IN ('creating', 'active', 'updating', 'deleting'))
);

CREATE INDEX did_numbers_tenant_id_idx ON did_numbers (tenant_id);
CREATE INDEX did_numbers_unsettled_idx ON did_numbers (updated_at) WHERE state <> 'active';
