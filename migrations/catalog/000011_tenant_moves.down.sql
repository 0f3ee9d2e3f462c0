DELETE FROM operations WHERE kind = 'move';
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (kind IN ('backup', 'restore'));
UPDATE tenants SET provisioning = 'ready' WHERE provisioning = 'moving';
ALTER TABLE tenants DROP CONSTRAINT tenants_provisioning_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_provisioning_check CHECK (provisioning IN ('pending', 'ready', 'failed', 'deleting'));
ALTER TABLE tenants DROP COLUMN held_until;
