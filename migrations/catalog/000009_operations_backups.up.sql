-- Long actions on one tenant are operations (docs/OPERATIONS.md,
-- "Operations"): recorded before they start, updated as they go, and
-- finished by whoever survives a crash: backups, and restores of one
-- tenant from its own backup.

CREATE TABLE operations (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CONSTRAINT operations_kind_check CHECK (kind IN ('backup', 'restore')),
    tenant_id        bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'running'
                     CONSTRAINT operations_state_check CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    phase            text NOT NULL DEFAULT '',
    progress         jsonb NOT NULL DEFAULT '{}',
    error            text NOT NULL DEFAULT '',
    cancel_requested boolean NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT operations_finished CHECK ((state = 'running') = (finished_at IS NULL))
);

-- One operation per tenant at a time: a second start is 409.
CREATE UNIQUE INDEX operations_one_running ON operations (tenant_id) WHERE state = 'running';
CREATE INDEX operations_tenant_idx ON operations (tenant_id, id DESC);

-- A backup outlives its operation and its tenant: the final backup of a
-- deleted tenant is what an operator restores from. Its file is
-- BACKUP_DIR/<path>.
CREATE TABLE backups (
    id             bigserial PRIMARY KEY,
    tenant_id      bigint NOT NULL,
    operation_id   bigint REFERENCES operations (id) ON DELETE SET NULL,
    state          text NOT NULL DEFAULT 'running'
                   CONSTRAINT backups_state_check CHECK (state IN ('running', 'ready', 'failed')),
    tenant_slug    text NOT NULL,
    isolation      text NOT NULL,
    server         text NOT NULL,
    db_name        text NOT NULL,
    schema_version integer NOT NULL,
    path           text NOT NULL UNIQUE,
    -- Taken by BACKUP_SCHEDULE (and pruned to BACKUP_KEEP), not asked for.
    scheduled      boolean NOT NULL DEFAULT false,
    size_bytes     bigint,
    sha256         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX backups_tenant_idx ON backups (tenant_id, id DESC);
CREATE INDEX backups_scheduled_idx ON backups (tenant_id, created_at DESC) WHERE scheduled;
