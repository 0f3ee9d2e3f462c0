package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// OperationKind is what a long action on one tenant does.
type OperationKind string

// The kinds of operations.
const (
	OperationBackup  OperationKind = "backup"
	OperationRestore OperationKind = "restore"
)

// OperationState is where an operation is.
type OperationState string

// Operation states: running, then exactly one of the others.
const (
	OperationRunning   OperationState = "running"
	OperationSucceeded OperationState = "succeeded"
	OperationFailed    OperationState = "failed"
	OperationCancelled OperationState = "cancelled"
)

// Operation is a long action on one tenant, recorded in the catalog before
// it starts and updated as it goes (docs/OPERATIONS.md, "Operations"). One
// runs per tenant at a time, under the tenant's lifecycle lock, so that no
// create, delete or migration of the tenant overlaps it, and so that a
// running operation whose lock nobody holds is known to be orphaned.
type Operation struct {
	ID       int64          `json:"id"`
	Kind     OperationKind  `json:"kind"`
	TenantID int64          `json:"tenant_id"`
	State    OperationState `json:"state"`
	// Phase is what a running operation does now (a backup: "dumping",
	// "storing"); Progress its counters (a backup: bytes written).
	Phase           string         `json:"phase"`
	Progress        map[string]any `json:"progress"`
	Error           string         `json:"error"`
	CancelRequested bool           `json:"cancel_requested"`
	StartedAt       time.Time      `json:"started_at"`
	FinishedAt      *time.Time     `json:"finished_at"`
	// BackupID is the backup a backup operation makes.
	BackupID *int64 `json:"backup_id,omitempty"`
}

// OperationFilter selects operations (GET /api/operations).
type OperationFilter struct {
	TenantID int64
	Kind     OperationKind
	State    OperationState
	Limit    int
}

// BackupState is where a backup is.
type BackupState string

// Backup states.
const (
	BackupRunning BackupState = "running"
	BackupReady   BackupState = "ready"
	BackupFailed  BackupState = "failed"
)

// Backup is one archive of one tenant's database or schema (pg_dump's
// custom format), with what it was taken from. It outlives its tenant: a
// deleted tenant's backups stay until an operator deletes them.
type Backup struct {
	ID            int64       `json:"id"`
	TenantID      int64       `json:"tenant_id"`
	OperationID   *int64      `json:"operation_id"`
	State         BackupState `json:"state"`
	TenantSlug    string      `json:"tenant_slug"`
	Isolation     Isolation   `json:"isolation"`
	Server        string      `json:"server"`
	DBName        string      `json:"db_name"`
	SchemaVersion uint        `json:"schema_version"`
	// Path is the archive's file under BACKUP_DIR; never shown (the
	// download route streams it).
	Path      string `json:"-"`
	SizeBytes *int64 `json:"size_bytes"`
	SHA256    string `json:"sha256"`
	// Scheduled says BACKUP_SCHEDULE took it (and BACKUP_KEEP prunes it).
	Scheduled  bool       `json:"scheduled"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// OperationStore keeps operations and backups (catalog).
type OperationStore interface {
	// StartBackup records a running backup operation of t and its backup
	// row (with its Path set), in one transaction; Conflict when t has an
	// operation running.
	StartBackup(ctx context.Context, t *Tenant, scheduled bool) (*Operation, *Backup, error)
	// DueForBackup names up to limit ready tenants with no scheduled
	// backup taken (or running) within every, nor one failed in the last
	// retry, the longest without first.
	DueForBackup(ctx context.Context, every, retry time.Duration, limit int) ([]int64, error)
	// BackupFreshness measures, over the tenants the schedule covers, how
	// old each one's newest ready backup is (its creation, if it has none).
	BackupFreshness(ctx context.Context, overdue time.Duration) (BackupFreshness, error)
	// PrunableBackups lists the scheduled backups past the keep newest
	// ready ones of their tenant, and failed scheduled ones older than
	// retry.
	PrunableBackups(ctx context.Context, keep int, retry time.Duration) ([]Backup, error)
	// StartOperation records a running operation of another kind, its
	// progress holding what a recovery needs (a restore: backup_id).
	StartOperation(ctx context.Context, kind OperationKind, t *Tenant, progress map[string]any) (*Operation, error)
	// FinishOperation ends an operation (other than a backup). release,
	// if not nil, runs after the end is written and before it is
	// committed: the runner lets go of the tenant's lock there (see
	// Operations.background).
	FinishOperation(ctx context.Context, op *Operation, release func()) error
	// OperationRunning says whether operation id is still running,
	// waiting for an end being committed.
	OperationRunning(ctx context.Context, id int64) (bool, error)
	// SetProgress replaces a finished operation's progress (a restore's,
	// once the data it set aside is dropped).
	SetProgress(ctx context.Context, id int64, progress map[string]any) error
	// ProgressOperation records a running operation's phase and counters
	// and says whether a cancel was asked for.
	ProgressOperation(ctx context.Context, id int64, phase string, progress map[string]any) (cancel bool, err error)
	// FinishBackup ends a backup operation: state and error on the
	// operation, and on its backup ready (with size and SHA-256) or failed.
	// release as FinishOperation's.
	FinishBackup(ctx context.Context, op *Operation, b *Backup, release func()) error
	Operation(ctx context.Context, id int64) (*Operation, error)
	Operations(ctx context.Context, f OperationFilter) ([]Operation, error)
	RunningOperations(ctx context.Context) ([]Operation, error)
	// CancelOperation asks a running operation to stop (Conflict when it
	// is not running).
	CancelOperation(ctx context.Context, id int64) (*Operation, error)
	Backup(ctx context.Context, id int64) (*Backup, error)
	BackupOf(ctx context.Context, operationID int64) (*Backup, error)
	Backups(ctx context.Context, tenantID int64) ([]Backup, error)
	DeleteBackup(ctx context.Context, id int64) error
}

// Dumper writes a tenant's database or schema as a pg_dump archive into
// the file at path, synced (tenantdb.Provisioner, through the tenant's
// server).
type Dumper interface {
	DumpFile(ctx context.Context, t *Tenant, path string) error
}

// Restorer replaces a tenant's database or schema with a backup's
// archive, in place, and finishes or undoes an interrupted restore
// (tenantdb.Provisioner, through the tenant's server).
type Restorer interface {
	Restore(ctx context.Context, t *Tenant, file string, op int64, opts RestoreOptions) (previous string, err error)
	RecoverRestore(ctx context.Context, t *Tenant, op int64) (restored bool, err error)
	// DropAside drops the previous database or schema a restore kept.
	DropAside(ctx context.Context, t *Tenant, name string) error
}

// RestoreOptions say how a restore checks and swaps in what it restored.
type RestoreOptions struct {
	// Version is the backup's schema version: a restored database is
	// checked to be at it, clean, before it is swapped in.
	Version uint
	// Latest is the binary's latest tenant version: a restored database
	// (database mode) at an older Version is migrated up to it, beside
	// the tenant's, before the swap.
	Latest uint
	// Hold, if set, holds the tenant's requests (its Hold and Release)
	// around the swap, which must fit in Timeout: the restore of a tenant
	// being served (database mode).
	Hold    *MoveHooks
	Timeout time.Duration
}

// OperationLocks are the tenant lifecycle locks operations run under, and
// what they record of a tenant (a restore: its schema version).
type OperationLocks interface {
	Tenant(ctx context.Context, id int64) (*Tenant, error)
	LockTenant(ctx context.Context, id int64) (unlock func(), err error)
	RecordMigrations(ctx context.Context, recs []MigrationRecord) (found []bool, err error)
}

// Operations starts, runs, cancels and recovers operations.
type Operations struct {
	Store    OperationStore
	Locks    OperationLocks
	Dumper   Dumper
	Restorer Restorer
	// Migrator brings a restored tenant to the binary's latest version.
	Migrator Migrator
	// Mover and Moves move tenants between servers; CutoverTimeout bounds
	// an online move's held pause (MOVE_CUTOVER_TIMEOUT, default 5 s),
	// SlotTimeout its wait for the source's open transactions
	// (MOVE_SLOT_TIMEOUT, default 10 min); MoveSourceGrace is how long the
	// source a move left is kept (MOVE_SOURCE_GRACE) before DropAsides
	// drops it.
	Mover           Mover
	Moves           MoveStore
	CutoverTimeout  time.Duration
	SlotTimeout     time.Duration
	MoveSourceGrace time.Duration
	// BackupDir is where archives are written (BACKUP_DIR).
	BackupDir string
	// Latest is the newest tenant migration this binary carries.
	Latest uint
	// Every, if set, is how often each ready tenant gets a scheduled
	// backup (BACKUP_SCHEDULE); Keep how many of its scheduled backups are
	// kept (BACKUP_KEEP); Concurrency how many scheduled backups run at
	// once, fleet-wide (default 2).
	Every       time.Duration
	Keep        int
	Concurrency int
	// AsideGrace is how long a restore keeps the data it replaced
	// (TENANT_DELETE_GRACE) before DropAsides drops it.
	AsideGrace time.Duration
	// ProgressEvery is how often a running operation records its progress
	// and looks for a cancel (default 1 s).
	ProgressEvery time.Duration
	Log           *slog.Logger
	// Observe, if set, counts each operation that ends, by kind and state
	// (controlplane_operations_total).
	Observe func(kind OperationKind, state OperationState)
	// Step, if set, is called at each named step (tests kill the process
	// there).
	Step func(name string)

	mu      sync.Mutex
	ctx     context.Context // the process's: running operations stop with it
	running sync.WaitGroup
}

// Start sets the context operations run in (they are cancelled with it,
// and recorded as failed: the process is stopping) and returns a function
// that waits for them.
func (o *Operations) Start(ctx context.Context) (wait func()) {
	o.mu.Lock()
	o.ctx = ctx
	o.mu.Unlock()
	return o.running.Wait
}

func (o *Operations) step(name string) {
	if o.Step != nil {
		o.Step(name)
	}
}

// StartBackup starts a backup of tenant id and returns its operation, at
// once: the backup runs in the background. The tenant must be ready
// (there is nothing to back up otherwise), with no operation, create,
// delete or migration running (Conflict).
func (o *Operations) StartBackup(ctx context.Context, id int64) (*Operation, error) {
	return o.startBackup(ctx, id, false)
}

func (o *Operations) startBackup(ctx context.Context, id int64, scheduled bool) (*Operation, error) {
	t, err := o.Locks.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Provisioning != ProvisionReady {
		return nil, Errorf(Conflict, "tenant %d is %s: only a ready tenant can be backed up", id, t.Provisioning)
	}
	// The lock first, the operation's row after: a running operation whose
	// tenant lock nobody holds is then always an orphan (Recover).
	unlock, err := o.Locks.LockTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	// Read again under the lock: a migration may have moved its version.
	if t, err = o.Locks.Tenant(ctx, id); err != nil {
		unlock()
		return nil, err
	}
	op, b, err := o.Store.StartBackup(ctx, t, scheduled)
	if err != nil {
		unlock()
		return nil, err
	}
	o.background(unlock, func(base context.Context, release func()) { o.runBackup(base, op, b, t, release) })
	return op, nil
}

// BackupLocked takes a backup of t and waits for it, the caller holding
// t's lifecycle lock (a delete's final backup). It is an operation like
// any other, listed and audited.
func (o *Operations) BackupLocked(ctx context.Context, t *Tenant) error {
	op, b, err := o.Store.StartBackup(ctx, t, false)
	if err != nil {
		return err
	}
	o.runBackup(ctx, op, b, t, nil) // the caller releases its lock
	if op.State != OperationSucceeded {
		return fmt.Errorf("final backup (operation %d): %s", op.ID, op.Error)
	}
	return nil
}

// background runs fn in the operations' context, holding the tenant's
// lock (unlock lets it go) for the operation's whole life.
//
// fn hands release to the store with the operation's end, which lets the
// lock go inside the transaction recording that end, before its commit:
//   - a client that reads the operation ended finds the tenant free, and
//     its next lifecycle request is not refused as contended;
//   - a Recover that takes the lock in between reads the operation FOR
//     UPDATE (OperationRunning), so it waits for that commit and does not
//     abandon an operation that has just ended (removing a finished
//     backup's file).
//
// Should fn not record its end (the catalog unreachable), the lock is let
// go when fn returns, and the next reconcile ends the operation.
func (o *Operations) background(unlock func(), fn func(base context.Context, release func())) {
	o.mu.Lock()
	base := o.ctx
	o.mu.Unlock()
	if base == nil {
		base = context.Background()
	}
	release := sync.OnceFunc(unlock)
	o.running.Add(1)
	go func() {
		defer o.running.Done()
		defer release()
		fn(base, release)
	}()
}

// StartRestore starts replacing tenant id's data with backup backupID's,
// in place, and returns its operation at once. The tenant must be ready;
// the backup ready and the tenant's own (a backup of another tenant is
// refused: that would hand one customer's data to another), of the same
// isolation, at a version this binary knows. A database-mode tenant with
// a backup at the binary's latest version may be served meanwhile (an
// online restore: restored beside it, then swapped in with its requests
// held, as a move's cutover); otherwise it must be suspended (it is not
// served meanwhile: schema mode restores in place, an older backup is
// migrated after the swap). The previous database or schema is kept,
// closed, under the name the operation's progress names.
func (o *Operations) StartRestore(ctx context.Context, id, backupID int64) (*Operation, error) {
	latest := o.Latest
	t, err := o.Locks.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := o.Store.Backup(ctx, backupID)
	if ErrorCode(err) == NotFound {
		return nil, FieldError("backup_id", "no backup has this id")
	}
	if err != nil {
		return nil, err
	}
	switch {
	case b.TenantID != t.ID:
		return nil, FieldError("backup_id", fmt.Sprintf("is a backup of tenant %d, not of tenant %d: a tenant is restored from its own backups only", b.TenantID, t.ID))
	case b.State != BackupReady:
		return nil, FieldError("backup_id", "is "+string(b.State)+": only a ready backup can be restored")
	case b.Isolation != t.Isolation:
		return nil, FieldError("backup_id", "is of a "+string(b.Isolation)+"-mode tenant; this tenant is in "+string(t.Isolation)+" mode")
	case b.SchemaVersion > latest:
		return nil, FieldError("backup_id", fmt.Sprintf("is at schema version %d, newer than this binary knows (%d)", b.SchemaVersion, latest))
	case t.Status != StatusSuspended && !online(t):
		return nil, Errorf(Conflict, `tenant %d is %s: suspend it first (PATCH {"status": "suspended"}): a schema-mode tenant's schema is restored in place, and the tenant is not served meanwhile`, id, t.Status)
	case t.Provisioning != ProvisionReady:
		return nil, Errorf(Conflict, "tenant %d is %s: only a ready tenant can be restored", id, t.Provisioning)
	}
	unlock, err := o.Locks.LockTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if t, err = o.Locks.Tenant(ctx, id); err != nil || (t.Status != StatusSuspended && !online(t)) {
		unlock()
		return nil, errors.Join(err, Errorf(Conflict, "tenant %d was resumed meanwhile", id))
	}
	op, err := o.Store.StartOperation(ctx, OperationRestore, t, map[string]any{"backup_id": b.ID})
	if err != nil {
		unlock()
		return nil, err
	}
	o.background(unlock, func(base context.Context, release func()) { o.runRestore(base, op, b, t, latest, release) })
	return op, nil
}

// online says whether a backup can replace t's data while t is served:
// a database-mode tenant's is restored (and migrated up) beside it, then
// swapped in with its requests held; a schema is restored in place.
func online(t *Tenant) bool {
	return t.Isolation == IsolationDatabase
}

// runRestore restores, migrates the tenant up to latest, and records it,
// with release (see background).
func (o *Operations) runRestore(base context.Context, op *Operation, b *Backup, t *Tenant, latest uint, release func()) {
	ctx := base
	progress := map[string]any{"backup_id": b.ID}
	opts := RestoreOptions{Version: b.SchemaVersion, Latest: latest, Timeout: o.CutoverTimeout}
	if t.Status != StatusSuspended && o.Moves != nil {
		hooks := o.holdHooks(t.ID)
		opts.Hold = &hooks
		progress["online"] = true
	}
	previous, err := o.Restorer.Restore(ctx, t, filepath.Join(o.BackupDir, b.Path), op.ID, opts)
	if err == nil {
		progress["previous"] = previous
		o.step("restore:swapped")
		from := b.SchemaVersion
		if t.Isolation == IsolationDatabase {
			from = latest // migrated before the swap (RestoreOptions.Latest)
		}
		err = o.migrateRestored(ctx, t, from, latest)
	}
	now := time.Now()
	op.FinishedAt, op.Progress = &now, progress
	op.State = OperationSucceeded
	if err != nil {
		op.State, op.Error = OperationFailed, err.Error()
	}
	_ = o.record(ctx, op, release)
	if o.Log != nil {
		o.Log.Info("restore finished", "operation_id", op.ID, "backup_id", b.ID, "tenant_id", t.ID, "state", op.State, "previous", previous, "err", op.Error)
	}
}

// migrateRestored records the restored tenant at the backup's version and
// migrates it up to latest (the ordinary up, which reads the real version
// first when the catalog says another), recording the outcome.
func (o *Operations) migrateRestored(ctx context.Context, t *Tenant, from, latest uint) error {
	rec := MigrationRecord{TenantID: t.ID, Version: from}
	if from < latest {
		restored := *t
		restored.SchemaVersion = from
		out := o.Migrator.Migrate(ctx, &restored, MigrationOp{Kind: MigrateUp})
		rec = MigrationRecord{TenantID: t.ID, Version: out.To, Dirty: out.Dirty}
		if out.Err != nil {
			rec.Error = out.Err.Error()
		}
		if _, err := o.Locks.RecordMigrations(context.WithoutCancel(ctx), []MigrationRecord{rec}); err != nil {
			return errors.Join(out.Err, err)
		}
		if out.Err != nil {
			return fmt.Errorf("restored at version %d, then migrating up failed (repair it as any failed migration: docs/MIGRATIONS.md): %w", from, out.Err)
		}
		return nil
	}
	_, err := o.Locks.RecordMigrations(context.WithoutCancel(ctx), []MigrationRecord{rec})
	return err
}

// runBackup dumps t into b's file: under a ".partial" name, synced,
// hashed, then renamed, so that a file under the backup's name is always
// complete. Progress (the file's size so far) is recorded every
// ProgressEvery, and a cancel asked for meanwhile stops the dump. Its end
// is recorded with release (see background).
func (o *Operations) runBackup(base context.Context, op *Operation, b *Backup, t *Tenant, release func()) {
	ctx, cancel := context.WithCancel(base)
	defer cancel()
	var cancelled atomic.Bool
	partial := filepath.Join(o.BackupDir, b.Path) + ".partial"
	phase := atomic.Value{}
	phase.Store("dumping")
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // progress and cancel
		defer close(watched)
		every := o.ProgressEvery
		if every <= 0 {
			every = time.Second
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c, err := o.Store.ProgressOperation(context.WithoutCancel(ctx), op.ID, phase.Load().(string), map[string]any{"bytes": fileSize(partial)})
			if err == nil && c {
				cancelled.Store(true)
				cancel()
			}
		}
	}()
	size, sum, err := o.writeBackup(ctx, t, b, &phase)
	close(stop)
	<-watched

	now := time.Now()
	op.FinishedAt, b.FinishedAt = &now, &now
	switch {
	case err == nil:
		op.State, b.State = OperationSucceeded, BackupReady
		b.SizeBytes, b.SHA256 = &size, sum
		op.Progress = map[string]any{"bytes": size}
	case cancelled.Load():
		op.State, b.State, op.Error = OperationCancelled, BackupFailed, "cancelled"
	default:
		op.State, b.State, op.Error = OperationFailed, BackupFailed, err.Error()
		if base.Err() != nil {
			op.Error = "interrupted: the control plane stopped; start the backup again"
		}
	}
	// Recorded even when the process is stopping: the catalog must say
	// what happened.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	o.observe(op)
	if ferr := o.Store.FinishBackup(fctx, op, b, release); ferr != nil && o.Log != nil {
		o.Log.Error("recording the end of a backup failed; the next reconcile records it", "operation_id", op.ID, "tenant_id", t.ID, "err", ferr)
	}
	if o.Log != nil {
		o.Log.Info("backup finished", "operation_id", op.ID, "backup_id", b.ID, "tenant_id", t.ID, "state", op.State, "bytes", size, "err", op.Error)
	}
}

// writeBackup writes the archive and returns its size and SHA-256. pg_dump
// writes the file itself (and syncs it): the archive never passes through
// this process, whose CPU would otherwise compete with pg_dump's and the
// server's; the hash is read back from the page cache.
func (o *Operations) writeBackup(ctx context.Context, t *Tenant, b *Backup, phase *atomic.Value) (int64, string, error) {
	final := filepath.Join(o.BackupDir, b.Path)
	partial := final + ".partial"
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return 0, "", fmt.Errorf("backup folder: %w", err)
	}
	// Made here with mode 0600: pg_dump reopens it and keeps the mode.
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return 0, "", fmt.Errorf("backup file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(partial)
		}
	}()
	o.step("backup:started")
	if err := o.Dumper.DumpFile(ctx, t, partial); err != nil {
		return 0, "", err
	}
	phase.Store("storing")
	o.step("backup:dumped")
	size, sum, err := hashFile(partial)
	if err != nil {
		return 0, "", err
	}
	if err := os.Rename(partial, final); err != nil {
		return 0, "", err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(final)); err == nil { // the rename itself durable
		_ = d.Sync()
		_ = d.Close()
	}
	return size, sum, nil
}

// hashFile returns the size and SHA-256 of the file at path.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// fileSize is the size of the file at path, 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// BackupFreshness is how far behind the backup schedule the fleet is, for
// the metrics an operator alerts on (a schedule that silently stopped: a
// reconciler that cannot take its lock, a full disk, a tenant whose dump
// fails every time). It names no tenant: `GET /api/backups` does.
type BackupFreshness struct {
	// Tenants are the tenants the schedule covers (ready ones).
	Tenants int
	// Overdue counts those whose newest ready backup is older than
	// OverdueAfter(Every).
	Overdue int
	// Oldest is the age of the stalest tenant's newest ready backup.
	Oldest time.Duration
}

// OverdueAfter is when a tenant's backups count as overdue: two schedule
// periods. One period is not enough, since a tenant is due exactly at one
// period and then waits for the reconciler's next pass, for a free slot of
// Concurrency and for its dump to finish.
func OverdueAfter(every time.Duration) time.Duration { return 2 * every }

// Freshness measures the fleet's backups against the schedule; ok is false
// when no schedule is set (BACKUP_SCHEDULE), so nothing is overdue.
func (o *Operations) Freshness(ctx context.Context) (f BackupFreshness, ok bool, err error) {
	if o.Every <= 0 {
		return f, false, nil
	}
	f, err = o.Store.BackupFreshness(ctx, OverdueAfter(o.Every))
	return f, err == nil, err
}

// scheduleRetry is how long after a failed scheduled backup its tenant is
// tried again (not at every pass).
const scheduleRetry = 15 * time.Minute

// Schedule starts the scheduled backups that are due, Concurrency at a
// time fleet-wide, and prunes each tenant's scheduled backups to Keep (a
// ReconcileStep: one replica at a time, every RECONCILE_INTERVAL). It
// returns how many backups it started and pruned.
func (o *Operations) Schedule(ctx context.Context) (int, error) {
	if o.Every <= 0 {
		return 0, nil
	}
	running, err := o.Store.Operations(ctx, OperationFilter{Kind: OperationBackup, State: OperationRunning, Limit: 1000})
	if err != nil {
		return 0, err
	}
	room := max(o.Concurrency, 1) - len(running)
	n := 0
	var errs []error
	if room > 0 {
		due, err := o.Store.DueForBackup(ctx, o.Every, scheduleRetry, room)
		if err != nil {
			return 0, err
		}
		for _, id := range due {
			_, err := o.startBackup(ctx, id, true)
			switch {
			case err == nil:
				n++
			case ErrorCode(err) != Conflict: // busy tenants wait for the next pass
				errs = append(errs, fmt.Errorf("tenant %d: %w", id, err))
			}
		}
	}
	prune, err := o.Store.PrunableBackups(ctx, max(o.Keep, 1), scheduleRetry)
	if err != nil {
		return n, errors.Join(append(errs, err)...)
	}
	for _, b := range prune {
		if err := o.DeleteBackup(ctx, b.ID); err != nil && ErrorCode(err) != NotFound {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// DropAsides drops the data restores replaced once AsideGrace has passed
// since they finished, and the sources moves left once MoveSourceGrace
// has (finishing first a flipped move whose source could not be closed),
// a ReconcileStep; each is recorded in its operation's progress
// ("dropped": true).
func (o *Operations) DropAsides(ctx context.Context) (int, error) {
	ops, err := o.Store.Operations(ctx, OperationFilter{Kind: OperationRestore, State: OperationSucceeded, Limit: 1000})
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	if o.Mover != nil {
		moved, err := o.finishMoves(ctx)
		n += moved
		errs = append(errs, err)
	}
	for i := range ops {
		op := &ops[i]
		previous, _ := op.Progress["previous"].(string)
		if previous == "" || op.Progress["dropped"] == true || op.FinishedAt == nil || time.Since(*op.FinishedAt) < o.AsideGrace {
			continue
		}
		t, err := o.Locks.Tenant(ctx, op.TenantID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := o.Restorer.DropAside(ctx, t, previous); err != nil {
			errs = append(errs, fmt.Errorf("operation %d: %w", op.ID, err))
			continue
		}
		op.Progress["dropped"] = true
		if err := o.Store.SetProgress(ctx, op.ID, op.Progress); err != nil {
			errs = append(errs, err)
			continue
		}
		if o.Log != nil {
			o.Log.Info("the data a restore replaced was dropped after its grace period", "operation_id", op.ID, "tenant_id", t.ID, "name", previous)
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Cancel asks running operation id to stop; it stops within
// ProgressEvery, wherever it runs, and ends cancelled.
func (o *Operations) Cancel(ctx context.Context, id int64) (*Operation, error) {
	return o.Store.CancelOperation(ctx, id)
}

// Recover ends the operations a dead process left running: those whose
// tenant lock nobody holds (a live runner holds it for the operation's
// whole life). A backup's partial file is removed, and it ends failed
// ("interrupted"): running it again is the retry. It returns how many it
// ended (a ReconcileStep).
func (o *Operations) Recover(ctx context.Context) (int, error) {
	ops, err := o.Store.RunningOperations(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i := range ops {
		op := &ops[i]
		unlock, err := o.Locks.LockTenant(ctx, op.TenantID)
		if ErrorCode(err) == Conflict {
			continue // its runner (or another action on the tenant) is alive
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Its runner may have ended it since the list was read: its end
		// is committed (or being committed) once its lock is free.
		running, err := o.Store.OperationRunning(ctx, op.ID)
		if err != nil || !running {
			unlock()
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		err = o.abandon(ctx, op)
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("operation %d: %w", op.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// record writes the end of op (other than a backup) and counts it, even
// when ctx is cancelled (the process stopping): the catalog must say what
// happened. A failed write is logged; the next reconcile records the
// operation (Recover). release, if not nil, lets go of the tenant's lock
// as the end is committed (see background).
func (o *Operations) record(ctx context.Context, op *Operation, release func()) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	o.observe(op)
	err := o.Store.FinishOperation(fctx, op, release)
	if err != nil && o.Log != nil {
		o.Log.Error("recording the end of an operation failed; the next reconcile records it", "operation_id", op.ID, "kind", op.Kind, "tenant_id", op.TenantID, "err", err)
	}
	return err
}

func (o *Operations) observe(op *Operation) {
	if o.Observe != nil {
		o.Observe(op.Kind, op.State)
	}
}

// abandon records an orphaned operation as failed and removes what it
// left on disk.
func (o *Operations) abandon(ctx context.Context, op *Operation) error {
	defer o.observe(op)
	now := time.Now()
	op.State, op.FinishedAt = OperationFailed, &now
	op.Error = "interrupted: the process running it stopped; start it again"
	switch op.Kind {
	case OperationBackup:
		b, err := o.Store.BackupOf(ctx, op.ID)
		if err != nil {
			return err
		}
		final := filepath.Join(o.BackupDir, b.Path)
		for _, p := range []string{final + ".partial", final} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		b.State, b.FinishedAt = BackupFailed, &now
		if o.Log != nil {
			o.Log.Warn("an interrupted backup was recorded as failed and its partial file removed", "operation_id", op.ID, "backup_id", b.ID, "tenant_id", op.TenantID)
		}
		return o.Store.FinishBackup(ctx, op, b, nil)
	case OperationMove:
		return o.recoverMove(ctx, op)
	case OperationRestore:
		t, err := o.Locks.Tenant(ctx, op.TenantID)
		if err != nil {
			return err
		}
		restored, err := o.Restorer.RecoverRestore(ctx, t, op.ID)
		if err != nil {
			return err
		}
		if restored {
			op.Error = "interrupted after the restore: the tenant has the backup's data; its version is checked by migrate tenants status --verify"
			if id, ok := op.Progress["backup_id"].(float64); ok {
				if b, err := o.Store.Backup(ctx, int64(id)); err == nil {
					err = o.migrateRestored(ctx, t, b.SchemaVersion, o.Latest)
					if err == nil {
						op.State, op.Error = OperationSucceeded, ""
					}
				}
			}
		} else {
			op.Error = "interrupted: the restore was undone, the tenant's data is as before; start it again"
		}
		if o.Log != nil {
			o.Log.Warn("an interrupted restore was finished or undone", "operation_id", op.ID, "tenant_id", op.TenantID, "restored", restored)
		}
		return o.Store.FinishOperation(ctx, op, nil)
	}
	return fmt.Errorf("unknown operation kind %q", op.Kind)
}

// BackupFile opens backup id's archive for download: ready backups only.
func (o *Operations) BackupFile(ctx context.Context, id int64) (*Backup, *os.File, error) {
	b, err := o.Store.Backup(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if b.State != BackupReady {
		return nil, nil, Errorf(Conflict, "backup %d is %s: only a ready backup can be downloaded", id, b.State)
	}
	f, err := os.Open(filepath.Join(o.BackupDir, b.Path))
	if errors.Is(err, os.ErrNotExist) {
		// Taken by another replica whose BACKUP_DIR is not shared with
		// this one, or removed by hand: a deployment matter, not a bug.
		return nil, nil, Errorf(Conflict, "backup %d's file is not in this server's BACKUP_DIR (every replica needs the same, shared, folder; or the file was removed)", id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backup %d's file: %w", id, err)
	}
	return b, f, nil
}

// DeleteBackup removes backup id's file and record (not a running one).
func (o *Operations) DeleteBackup(ctx context.Context, id int64) error {
	b, err := o.Store.Backup(ctx, id)
	if err != nil {
		return err
	}
	if b.State == BackupRunning {
		return Errorf(Conflict, "backup %d is being taken: cancel its operation first", id)
	}
	if err := os.Remove(filepath.Join(o.BackupDir, b.Path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove backup %d's file: %w", id, err)
	}
	return o.Store.DeleteBackup(ctx, id)
}
