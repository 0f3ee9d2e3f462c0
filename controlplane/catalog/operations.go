package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
)

var _ controlplane.OperationStore = (*Store)(nil)

// operationRow is the operations table (migrations/catalog/000009).
type operationRow struct {
	ID              int64
	Kind            string
	TenantID        int64
	State           string
	Phase           string
	Progress        []byte
	Error           string
	CancelRequested bool
	StartedAt       time.Time
	FinishedAt      *time.Time
	BackupID        *int64 `gorm:"->"` // joined
}

func (r *operationRow) operation() controlplane.Operation {
	op := controlplane.Operation{ID: r.ID, Kind: controlplane.OperationKind(r.Kind), TenantID: r.TenantID, State: controlplane.OperationState(r.State),
		Phase: r.Phase, Error: r.Error, CancelRequested: r.CancelRequested, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, BackupID: r.BackupID,
		Progress: map[string]any{}}
	_ = json.Unmarshal(r.Progress, &op.Progress) // jsonb: always an object
	return op
}

// backupRow is the backups table.
type backupRow struct {
	ID            int64
	TenantID      int64
	OperationID   *int64
	State         string
	TenantSlug    string
	Isolation     string
	Server        string
	DBName        string `gorm:"column:db_name"`
	SchemaVersion int64
	Path          string
	SizeBytes     *int64
	SHA256        *string `gorm:"column:sha256"`
	Scheduled     bool
	CreatedAt     time.Time
	FinishedAt    *time.Time
}

func (r *backupRow) backup() controlplane.Backup {
	b := controlplane.Backup{ID: r.ID, TenantID: r.TenantID, OperationID: r.OperationID, State: controlplane.BackupState(r.State),
		TenantSlug: r.TenantSlug, Isolation: controlplane.Isolation(r.Isolation), Server: r.Server, DBName: r.DBName,
		SchemaVersion: uint(r.SchemaVersion), Path: r.Path, SizeBytes: r.SizeBytes, Scheduled: r.Scheduled, CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt}
	if r.SHA256 != nil {
		b.SHA256 = *r.SHA256
	}
	return b
}

var operationConstraints = sqlerr.Register(sqlerr.Catalog, map[string]sqlerr.Constraint{
	"operations_one_running": {Field: "tenant", Reason: "has an operation running already: one at a time per tenant (GET /api/operations?tenant=ID&state=running)"},
})

// operationSelect reads operations with the backup each made.
const operationSelect = `SELECT o.*, b.id AS backup_id FROM operations o LEFT JOIN backups b ON b.operation_id = o.id`

// StartBackup inserts the operation and its backup, whose file is
// tenant-<id>/backup-<backup id>.dump under BACKUP_DIR.
func (s *Store) StartBackup(ctx context.Context, t *controlplane.Tenant, scheduled bool) (*controlplane.Operation, *controlplane.Backup, error) {
	var op operationRow
	var b backupRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Raw(`INSERT INTO operations (kind, tenant_id, phase) VALUES ('backup', ?, 'starting') RETURNING *`, t.ID).Scan(&op).Error; err != nil {
			return sqlerr.Translate(err, operationConstraints)
		}
		err := tx.Raw(`INSERT INTO backups (tenant_id, operation_id, tenant_slug, isolation, server, db_name, schema_version, scheduled, path)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'tenant-' || ?::bigint || '/backup-' || currval('backups_id_seq') || '.dump') RETURNING *`,
			t.ID, op.ID, t.Slug, string(t.Isolation), t.ServerName(), t.DBName, int64(t.SchemaVersion), scheduled, t.ID).Scan(&b).Error
		if err != nil {
			return err
		}
		op.BackupID = &b.ID
		return audit(ctx, tx, "backup.start", t.ID, "backup "+strconv.FormatInt(b.ID, 10), nil)
	})
	if err != nil {
		return nil, nil, sqlerr.Translate(err, operationConstraints)
	}
	o, bk := op.operation(), b.backup()
	return &o, &bk, nil
}

// StartOperation inserts a running operation of kind on t, audited.
func (s *Store) StartOperation(ctx context.Context, kind controlplane.OperationKind, t *controlplane.Tenant, progress map[string]any) (*controlplane.Operation, error) {
	raw, err := json.Marshal(progress)
	if err != nil {
		return nil, err
	}
	var op operationRow
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Raw(`INSERT INTO operations (kind, tenant_id, phase, progress) VALUES (?, ?, 'starting', ?) RETURNING *`, string(kind), t.ID, raw).Scan(&op).Error; err != nil {
			return err
		}
		return audit(ctx, tx, string(kind)+".start", t.ID, "operation "+strconv.FormatInt(op.ID, 10), nil)
	})
	if err != nil {
		return nil, sqlerr.Translate(err, operationConstraints)
	}
	o := op.operation()
	return &o, nil
}

// FinishOperation records the end of an operation, audited. release, if
// not nil, runs once the end is written and before it is committed (see
// controlplane.OperationStore).
func (s *Store) FinishOperation(ctx context.Context, op *controlplane.Operation, release func()) error {
	return sqlerr.Translate(s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return finishOperation(ctx, tx, op, string(op.Kind)+".finish", op.TenantID, "operation "+strconv.FormatInt(op.ID, 10), release)
	}), nil)
}

// OperationRunning says whether operation id is still running. FOR
// UPDATE waits for a transaction recording its end (which holds the row)
// to commit or roll back, so the answer is never "running" for an
// operation whose end is being committed.
func (s *Store) OperationRunning(ctx context.Context, id int64) (bool, error) {
	var running []bool
	if err := s.db.WithContext(ctx).Raw(`SELECT state = 'running' FROM operations WHERE id = ? FOR UPDATE`, id).Scan(&running).Error; err != nil {
		return false, sqlerr.Translate(err, nil)
	}
	return len(running) == 1 && running[0], nil
}

// finishOperation records op's end in tx (state, error, progress, finished
// at, while it is still running) and audits it as action on target; then
// release, if not nil, runs before tx commits (the row held meanwhile).
func finishOperation(ctx context.Context, tx *gorm.DB, op *controlplane.Operation, action string, tenantID int64, target string, release func()) error {
	progress, err := json.Marshal(op.Progress)
	if err != nil || op.Progress == nil {
		progress = []byte("{}")
	}
	err = tx.Exec(`UPDATE operations SET state = ?, phase = '', progress = ?, error = ?, finished_at = ? WHERE id = ? AND state = 'running'`,
		string(op.State), progress, op.Error, op.FinishedAt, op.ID).Error
	if err != nil {
		return err
	}
	diff := map[string]controlplane.Change{"state": {Before: "running", After: string(op.State)}}
	if op.Error != "" {
		diff["error"] = controlplane.Change{After: op.Error}
	}
	if err := audit(ctx, tx, action, tenantID, target, diff); err != nil {
		return err
	}
	if release != nil {
		release()
	}
	return nil
}

// SetProgress replaces an operation's progress.
func (s *Store) SetProgress(ctx context.Context, id int64, progress map[string]any) error {
	raw, err := json.Marshal(progress)
	if err != nil {
		return err
	}
	return sqlerr.Translate(s.db.WithContext(ctx).Exec(`UPDATE operations SET progress = ? WHERE id = ?`, raw, id).Error, nil)
}

// ProgressOperation records a running operation's phase and counters.
func (s *Store) ProgressOperation(ctx context.Context, id int64, phase string, progress map[string]any) (bool, error) {
	raw, err := json.Marshal(progress)
	if err != nil {
		return false, err
	}
	var cancel []bool
	err = s.db.WithContext(ctx).Raw(`UPDATE operations SET phase = ?, progress = ? WHERE id = ? AND state = 'running' RETURNING cancel_requested`,
		phase, raw, id).Scan(&cancel).Error
	if err != nil {
		return false, sqlerr.Translate(err, nil)
	}
	return len(cancel) == 1 && cancel[0], nil
}

// FinishBackup records the end of a backup operation and its backup, and
// audits it, in one transaction.
func (s *Store) FinishBackup(ctx context.Context, op *controlplane.Operation, b *controlplane.Backup, release func()) error {
	var sum *string
	if b.SHA256 != "" {
		sum = &b.SHA256
	}
	return sqlerr.Translate(s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Exec(`UPDATE backups SET state = ?, size_bytes = ?, sha256 = ?, finished_at = ? WHERE id = ?`,
			string(b.State), b.SizeBytes, sum, b.FinishedAt, b.ID).Error
		if err != nil {
			return err
		}
		return finishOperation(ctx, tx, op, "backup.finish", b.TenantID, "backup "+strconv.FormatInt(b.ID, 10), release)
	}), nil)
}

func operationNotFound(id int64) error {
	return controlplane.Errorf(controlplane.NotFound, "operation %d not found", id)
}

// Operation returns one operation.
func (s *Store) Operation(ctx context.Context, id int64) (*controlplane.Operation, error) {
	var rows []operationRow
	if err := s.db.WithContext(ctx).Raw(operationSelect+` WHERE o.id = ?`, id).Scan(&rows).Error; err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	if len(rows) == 0 {
		return nil, operationNotFound(id)
	}
	op := rows[0].operation()
	return &op, nil
}

// Operations lists operations, newest first.
func (s *Store) Operations(ctx context.Context, f controlplane.OperationFilter) ([]controlplane.Operation, error) {
	q, args := operationSelect+` WHERE true`, []any{}
	if f.TenantID != 0 {
		q, args = q+` AND o.tenant_id = ?`, append(args, f.TenantID)
	}
	if f.Kind != "" {
		q, args = q+` AND o.kind = ?`, append(args, string(f.Kind))
	}
	if f.State != "" {
		q, args = q+` AND o.state = ?`, append(args, string(f.State))
	}
	q, args = q+` ORDER BY o.id DESC LIMIT ?`, append(args, max(f.Limit, 1))
	var rows []operationRow
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	out := make([]controlplane.Operation, len(rows))
	for i := range rows {
		out[i] = rows[i].operation()
	}
	return out, nil
}

// RunningOperations lists every running operation.
func (s *Store) RunningOperations(ctx context.Context) ([]controlplane.Operation, error) {
	return s.Operations(ctx, controlplane.OperationFilter{State: controlplane.OperationRunning, Limit: 1 << 20})
}

// CancelOperation marks a running operation's cancel, audited.
func (s *Store) CancelOperation(ctx context.Context, id int64) (*controlplane.Operation, error) {
	var op *controlplane.Operation
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var rows []operationRow
		if err := tx.Raw(`UPDATE operations SET cancel_requested = true WHERE id = ? AND state = 'running' RETURNING *`, id).Scan(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			cur, err := s.Operation(ctx, id)
			if err != nil {
				return err
			}
			return controlplane.Errorf(controlplane.Conflict, "operation %d is %s: only a running operation can be cancelled", id, cur.State)
		}
		o := rows[0].operation()
		op = &o
		return audit(ctx, tx, "operation.cancel", o.TenantID, "operation "+strconv.FormatInt(id, 10), nil)
	})
	if err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	return s.Operation(ctx, op.ID)
}

func backupNotFound(id int64) error {
	return controlplane.Errorf(controlplane.NotFound, "backup %d not found", id)
}

// Backup returns one backup.
func (s *Store) Backup(ctx context.Context, id int64) (*controlplane.Backup, error) {
	var row backupRow
	if err := s.db.WithContext(ctx).Table("backups").Where("id = ?", id).Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, backupNotFound(id)
		}
		return nil, sqlerr.Translate(err, nil)
	}
	b := row.backup()
	return &b, nil
}

// BackupOf returns the backup operation id makes.
func (s *Store) BackupOf(ctx context.Context, operationID int64) (*controlplane.Backup, error) {
	var row backupRow
	if err := s.db.WithContext(ctx).Table("backups").Where("operation_id = ?", operationID).Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, fmt.Errorf("operation %d has no backup", operationID)
		}
		return nil, sqlerr.Translate(err, nil)
	}
	b := row.backup()
	return &b, nil
}

// Backups lists tenant id's backups, newest first (also a deleted
// tenant's).
func (s *Store) Backups(ctx context.Context, tenantID int64) ([]controlplane.Backup, error) {
	var rows []backupRow
	if err := s.db.WithContext(ctx).Table("backups").Where("tenant_id = ?", tenantID).Order("id DESC").Find(&rows).Error; err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	out := make([]controlplane.Backup, len(rows))
	for i := range rows {
		out[i] = rows[i].backup()
	}
	return out, nil
}

// DeleteBackup deletes a backup's record, audited.
func (s *Store) DeleteBackup(ctx context.Context, id int64) error {
	return sqlerr.Translate(s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var tenant []int64
		if err := tx.Raw(`DELETE FROM backups WHERE id = ? RETURNING tenant_id`, id).Scan(&tenant).Error; err != nil {
			return err
		}
		if len(tenant) == 0 {
			return backupNotFound(id)
		}
		return audit(ctx, tx, "backup.delete", tenant[0], "backup "+strconv.FormatInt(id, 10), nil)
	}), nil)
}

// DueForBackup names ready tenants whose last scheduled backup (ready or
// running) is older than every, skipping those whose last scheduled one
// failed within retry; the longest without first.
func (s *Store) DueForBackup(ctx context.Context, every, retry time.Duration, limit int) ([]int64, error) {
	var ids []int64
	err := s.db.WithContext(ctx).Raw(`
		SELECT t.id FROM tenants t
		LEFT JOIN LATERAL (
			SELECT max(created_at) FILTER (WHERE state IN ('ready', 'running')) AS good,
			       max(created_at) FILTER (WHERE state = 'failed') AS failed
			FROM backups b WHERE b.tenant_id = t.id AND b.scheduled
		) last ON true
		WHERE t.provisioning = 'ready'
		  AND (last.good IS NULL OR last.good < now() - make_interval(secs => ?))
		  AND (last.failed IS NULL OR last.failed < now() - make_interval(secs => ?))
		ORDER BY last.good NULLS FIRST, t.id
		LIMIT ?`, every.Seconds(), retry.Seconds(), limit).Scan(&ids).Error
	return ids, sqlerr.Translate(err, nil)
}

// BackupFreshness measures the tenants DueForBackup considers (ready ones)
// by their newest ready backup, scheduled or not: one aggregate over the
// catalog, whatever the fleet's size.
func (s *Store) BackupFreshness(ctx context.Context, overdue time.Duration) (controlplane.BackupFreshness, error) {
	var r struct {
		Tenants int
		Overdue int
		Oldest  float64
	}
	err := s.db.WithContext(ctx).Raw(`
		SELECT count(*) AS tenants,
		       count(*) FILTER (WHERE since < now() - make_interval(secs => ?)) AS overdue,
		       coalesce(extract(epoch FROM now() - min(since)), 0)::float8 AS oldest
		FROM (
			SELECT coalesce((SELECT max(b.finished_at) FROM backups b WHERE b.tenant_id = t.id AND b.state = 'ready'), t.created_at) AS since
			FROM tenants t WHERE t.provisioning = 'ready'
		) f`, overdue.Seconds()).Scan(&r).Error
	if err != nil {
		return controlplane.BackupFreshness{}, sqlerr.Translate(err, nil)
	}
	return controlplane.BackupFreshness{Tenants: r.Tenants, Overdue: r.Overdue, Oldest: time.Duration(r.Oldest * float64(time.Second))}, nil
}

// PrunableBackups lists scheduled backups past the keep newest ready ones
// of each tenant, and failed scheduled ones older than retry.
func (s *Store) PrunableBackups(ctx context.Context, keep int, retry time.Duration) ([]controlplane.Backup, error) {
	var rows []backupRow
	err := s.db.WithContext(ctx).Raw(`
		SELECT * FROM (
			SELECT b.*, row_number() OVER (PARTITION BY tenant_id ORDER BY id DESC) AS rank
			FROM backups b WHERE scheduled AND state = 'ready'
		) r WHERE rank > ?
		UNION ALL
		SELECT b.*, 0 FROM backups b WHERE scheduled AND state = 'failed' AND created_at < now() - make_interval(secs => ?)
		ORDER BY id`, keep, retry.Seconds()).Scan(&rows).Error
	if err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	out := make([]controlplane.Backup, len(rows))
	for i := range rows {
		out[i] = rows[i].backup()
	}
	return out, nil
}
