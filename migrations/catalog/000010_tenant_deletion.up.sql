-- Deletion with a grace period (docs/OPERATIONS.md, "Deleting a tenant"):
-- a deleted tenant keeps its row (its slug and domain stay taken), its data
-- and its final backup, is served to nobody, and is purged once
-- TENANT_DELETE_GRACE has passed since deleted_at.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended', 'deleted'));
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz;
ALTER TABLE tenants ADD CONSTRAINT tenants_deleted_at CHECK ((status = 'deleted') = (deleted_at IS NOT NULL));
CREATE INDEX tenants_deleted_idx ON tenants (deleted_at) WHERE status = 'deleted';
