-- Moving a tenant between servers (docs/OPERATIONS.md, "Moving a tenant").
--
-- held_until: an online move's cutover holds the tenant's new requests on
-- every replica (they wait, they are not refused) until the move clears it
-- or this time passes; the change reaches the replicas by the tenants
-- trigger's NOTIFY, like any other.
--
-- provisioning 'moving': an offline move copies the tenant while it
-- answers 503 with Retry-After.
ALTER TABLE tenants ADD COLUMN held_until timestamptz;
ALTER TABLE tenants DROP CONSTRAINT tenants_provisioning_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_provisioning_check CHECK (provisioning IN ('pending', 'ready', 'failed', 'deleting', 'moving'));
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (kind IN ('backup', 'restore', 'move'));
