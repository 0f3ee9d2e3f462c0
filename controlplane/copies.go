package controlplane

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// BackupCopier makes new tenants from backups: POST /api/tenants with
// "from_backup" (a copy of a customer's data for support or staging).
type BackupCopier interface {
	// CheckCopy says why backup id cannot make a new tenant of isolation
	// iso ("": the backup's), before anything is created, and returns the
	// isolation the tenant gets.
	CheckCopy(ctx context.Context, id int64, iso Isolation) (Isolation, error)
	// CopyLocked restores backup id into t, just provisioned and not yet
	// served (its lock held), migrates it up to this binary's version and
	// returns that version.
	CopyLocked(ctx context.Context, t *Tenant, id int64) (uint, error)
}

var _ BackupCopier = (*Operations)(nil)

// CheckCopy implements BackupCopier. A schema-mode backup restores its
// schema under its own name, so it can only be put back into its own
// tenant: a copy is made from database-mode backups.
func (o *Operations) CheckCopy(ctx context.Context, id int64, iso Isolation) (Isolation, error) {
	b, err := o.Store.Backup(ctx, id)
	if ErrorCode(err) == NotFound {
		return "", FieldError("from_backup", "no backup has this id")
	}
	if err != nil {
		return "", err
	}
	switch {
	case b.State != BackupReady:
		return "", FieldError("from_backup", "is "+string(b.State)+": only a ready backup can be copied")
	case b.Isolation != IsolationDatabase:
		return "", FieldError("from_backup", "is a schema-mode backup, which restores into its own tenant only (POST /api/tenants/{id}/restore); copies are made from database-mode backups")
	case iso != "" && iso != b.Isolation:
		return "", FieldError("isolation", "must be "+string(b.Isolation)+", the backup's (or left out)")
	case b.SchemaVersion > o.Latest:
		return "", FieldError("from_backup", fmt.Sprintf("is at schema version %d, newer than this binary knows (%d)", b.SchemaVersion, o.Latest))
	}
	return b.Isolation, nil
}

// CopyLocked implements BackupCopier: a restore operation on the new
// tenant (listed and audited like any), its fresh database replaced by the
// backup's and dropped at once (it never held data).
func (o *Operations) CopyLocked(ctx context.Context, t *Tenant, id int64) (uint, error) {
	b, err := o.Store.Backup(ctx, id)
	if err != nil {
		return 0, err
	}
	op, err := o.Store.StartOperation(ctx, OperationRestore, t, map[string]any{"backup_id": b.ID, "copy_of": b.TenantID})
	if err != nil {
		return 0, err
	}
	version := b.SchemaVersion
	previous, err := o.Restorer.Restore(ctx, t, filepath.Join(o.BackupDir, b.Path), op.ID, RestoreOptions{Version: b.SchemaVersion})
	if err == nil {
		err = o.Restorer.DropAside(ctx, t, previous)
	}
	if err == nil && b.SchemaVersion < o.Latest {
		copied := *t
		copied.SchemaVersion = b.SchemaVersion
		out := o.Migrator.Migrate(ctx, &copied, MigrationOp{Kind: MigrateUp})
		version, err = out.To, out.Err
	}
	now := time.Now()
	op.FinishedAt, op.Progress = &now, map[string]any{"backup_id": b.ID, "copy_of": b.TenantID}
	op.State = OperationSucceeded
	if err != nil {
		op.State, op.Error = OperationFailed, err.Error()
	}
	if ferr := o.record(ctx, op, nil); ferr != nil { // the caller holds the tenant's lock
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return 0, fmt.Errorf("copy of backup %d: %w", b.ID, err)
	}
	return version, nil
}
