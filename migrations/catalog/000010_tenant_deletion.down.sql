-- Deleted tenants become suspended ones (their data is still there; a
-- release before this one deletes at once). Their roles stay NOLOGIN until
-- an operator resumes and rotates them (controlplane tenants
-- rotate-role-passwords sets LOGIN again).
DROP INDEX IF EXISTS tenants_deleted_idx;
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_deleted_at;
UPDATE tenants SET status = 'suspended' WHERE status = 'deleted';
ALTER TABLE tenants DROP COLUMN IF EXISTS deleted_at;
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check CHECK (status IN ('active', 'suspended'));
