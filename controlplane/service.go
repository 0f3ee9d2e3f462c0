package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Catalog stores tenants. Implementations translate their database errors
// into *Error once (unique violation → Conflict naming the field, no row →
// NotFound), so nothing above them sees a driver error.
type Catalog interface {
	// NextTenantID reserves the id of a tenant about to be created, so that
	// its database name can be derived from it before the row is written.
	NextTenantID(ctx context.Context) (int64, error)
	CreateTenant(ctx context.Context, t *Tenant) error
	// CreateTenantLocked is what a create needs before provisioning, in
	// one round trip: reserve an id (or, with o.SpareTemplate, claim a
	// spare database's), take the tenant's lifecycle lock, insert t as
	// pending with its audit entry. t is filled from the inserted row;
	// claimed says whether a spare was claimed. The lock is taken before
	// the row is visible, so no reconciler can pick the tenant up while
	// the caller provisions it.
	CreateTenantLocked(ctx context.Context, t *Tenant, o CreateOptions) (lock TenantLock, claimed bool, err error)
	Tenant(ctx context.Context, id int64) (*Tenant, error)
	ListTenants(ctx context.Context, f TenantFilter) ([]Tenant, int, error)
	// UpdateTenant runs fn on the current row, locked against concurrent
	// writers, and stores what fn leaves in it: writable fields and the
	// provisioning state. An error from fn aborts the update.
	UpdateTenant(ctx context.Context, id int64, fn func(*Tenant) error) (*Tenant, error)
	// SetProvisioning records the outcome of a provisioning step.
	SetProvisioning(ctx context.Context, id int64, state ProvisionState, version uint, lastError string) (*Tenant, error)
	DeleteTenant(ctx context.Context, id int64) error
	TenantsByProvisioning(ctx context.Context, states ...ProvisionState) ([]Tenant, error)
	// LockTenant takes an exclusive lock on the tenant's lifecycle (create,
	// retry, delete), held across processes until unlock is called. It does
	// not wait: a held lock is a Conflict.
	LockTenant(ctx context.Context, id int64) (unlock func(), err error)
	// Record appends an entry to the audit trail (the writes above record
	// their own, in their transaction).
	Record(ctx context.Context, action string, tenantID int64, target string, diff map[string]Change) error
	// Audit lists the audit trail, newest first.
	Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, int, error)
}

// CreateOptions says how Catalog.CreateTenantLocked names a new tenant.
type CreateOptions struct {
	// DBPrefix names the tenant's database or schema: DBPrefix + id.
	DBPrefix string
	// SpareTemplate, if set, claims a ready spare database made from this
	// template, and the tenant takes its id; with none left an id is
	// reserved as usual.
	SpareTemplate string
	// Server is the tenant server placement chose: the insert fails with
	// NoCapacity if it is not active or holds its capacity already,
	// checked under its row's lock, so concurrent creates never overfill
	// it.
	Server string
	// Idempotency, if set, is recorded with the tenant's id, in the
	// statement that inserts the tenant: a crash leaves both or neither.
	// A record of the same actor and key committed first fails the insert
	// (a Conflict), so one key makes at most one tenant.
	Idempotency *IdempotencyRecord
}

// TenantLock is a tenant's lifecycle lock held by a create.
type TenantLock interface {
	// FinishCreate marks the tenant ready at version and stores its first
	// API key, both audited, in one transaction, then releases the lock.
	// On failure the row stays pending and the lock held.
	FinishCreate(ctx context.Context, version uint, key KeyRecord) (*Tenant, *APIKey, error)
	// Unlock releases the lock; a no-op after FinishCreate succeeded.
	Unlock()
}

// KeyRecord is what is stored of a new API key.
type KeyRecord struct {
	Name, Prefix string
	Hash         [32]byte
}

// Provisioner creates, migrates and drops tenant databases or schemas.
// Every method is idempotent, so an interrupted step can simply run again.
type Provisioner interface {
	// DBName is the database or schema name of tenant id: DBPrefix() + id.
	DBName(id int64) string
	DBPrefix() string
	// Provision creates the tenant's database or schema if it does not
	// exist and migrates it to the latest version, which it returns.
	Provision(ctx context.Context, t *Tenant) (uint, error)
	// Deprovision drops the tenant's database or schema if it exists.
	Deprovision(ctx context.Context, t *Tenant) error
	// Seal closes a deleted tenant's database to its own role (no login,
	// its sessions ended); Unseal opens it again (undelete).
	Seal(ctx context.Context, t *Tenant) error
	Unseal(ctx context.Context, t *Tenant) error
}

// Tenants is the tenant lifecycle: create, change, provision, delete. The
// HTTP handlers are thin wrappers around it.
type Tenants struct {
	Catalog          Catalog
	Keys             KeyStore
	Provisioner      Provisioner
	DefaultIsolation Isolation
	// Spares, if set, are the default server's spares, claimed by creates
	// in database mode placed there; SparesOn, if set, gives another
	// server's (nil: it keeps none).
	Spares   *Spares
	SparesOn func(server string) *Spares
	// Placement chooses each new tenant's server; nil: the default one.
	Placement *Placement
	// Idempotency keeps the outcomes of creates sent with an
	// Idempotency-Key (CreateIdempotent), for IdempotencyTTL (0: a day).
	Idempotency    IdempotencyStore
	IdempotencyTTL time.Duration
	// ProvisionTimeout bounds one provisioning or deprovisioning run. The
	// run is detached from the request's context: a client that hangs up
	// must not leave a half-made database behind.
	ProvisionTimeout time.Duration
	Log              *slog.Logger
	// Step, if set, is called after each step of a create that the
	// catalog or a tenant server keeps ("create:pending",
	// "create:provisioned"): the crash tests kill the process there.
	Step func(name string)
	// ObserveProvisioning, if set, is told how each create's provisioning
	// went (ready, failed, or unavailable: the tenant server was out) and
	// how long it took: the metrics' histogram.
	ObserveProvisioning func(isolation Isolation, outcome string, took time.Duration)
	// DeleteGrace is how long a deleted tenant is kept before it is purged
	// (TENANT_DELETE_GRACE); FinalBackup takes the backup a delete takes
	// first, the caller holding the tenant's lock (Operations.BackupLocked).
	DeleteGrace time.Duration
	FinalBackup func(ctx context.Context, t *Tenant) error
	// Copies, if set, makes new tenants from backups (a create with
	// from_backup: Operations).
	Copies BackupCopier
	// PurgeElsewhere, if set, drops what a purged tenant left on servers
	// other than its own (the sources its moves kept:
	// Operations.DropMoveAsides).
	PurgeElsewhere func(ctx context.Context, t *Tenant) error
}

func (s *Tenants) observe(t *Tenant, outcome string, took time.Duration) {
	if s.ObserveProvisioning != nil {
		s.ObserveProvisioning(t.Isolation, outcome, took)
	}
}

func (s *Tenants) step(name string) {
	if s.Step != nil {
		s.Step(name)
	}
}

// Create validates spec, records the tenant as pending, and provisions its
// database. It returns only once the database exists at the latest
// migration, or with a ProvisioningFailed error after undoing what was made.
// A ready tenant comes with its first API key, shown this once.
//
// The catalog sees three round trips on one session holding the tenant's
// lifecycle lock: reserve the id, lock and insert the pending row; then,
// after provisioning, mark it ready with its first key and unlock.
func (s *Tenants) Create(ctx context.Context, spec TenantSpec) (*Tenant, *NewAPIKey, error) {
	t, key, _, err := s.create(ctx, spec, nil)
	return t, key, err
}

// create is Create, recording idem (if set) with the tenant row. inserted
// says whether the row, and idem with it, were written: an error with
// inserted came after, from provisioning.
func (s *Tenants) create(ctx context.Context, spec TenantSpec, idem *IdempotencyRecord) (_ *Tenant, _ *NewAPIKey, inserted bool, _ error) {
	if spec.FromBackup != nil {
		if s.Copies == nil {
			return nil, nil, false, FieldError("from_backup", "is not available in this process")
		}
		iso, err := s.Copies.CheckCopy(ctx, *spec.FromBackup, spec.Isolation)
		if err != nil {
			return nil, nil, false, err
		}
		spec.Isolation = iso
	}
	spec.Normalize(s.DefaultIsolation)
	if err := spec.Validate(); err != nil {
		return nil, nil, false, err
	}
	// Detached: a client that hangs up must not leave a half-made tenant.
	ctx, cancel := s.detach(ctx)
	defer cancel()
	t := &Tenant{Provisioning: ProvisionPending}
	t.apply(spec)
	t.Isolation = spec.Isolation
	lock, claimed, err := s.insert(ctx, t, spec.Server, idem)
	if err != nil {
		return nil, nil, false, err
	}
	defer lock.Unlock()
	s.step("create:pending")
	start := time.Now()
	var version uint
	if claimed {
		// Make a new spare once this create is done, not beside it.
		spares := s.sparesOf(t.Server)
		defer spares.Wake()
		version, err = spares.Provisioner.AdoptSpare(ctx, t)
		if err != nil {
			// Provision finishes whatever is there (a spare's marks are
			// this tenant's to take over) or makes the database anew.
			s.Log.Warn("claimed spare database could not be adopted as is; provisioning it the ordinary way", "tenant_id", t.ID, "err", err)
		}
	}
	if !claimed || err != nil {
		version, err = s.Provisioner.Provision(ctx, t)
	}
	if err == nil && spec.FromBackup != nil {
		// Restored before the tenant is first served, under its lock; a
		// failure fails the create like a failed provisioning.
		version, err = s.Copies.CopyLocked(context.WithoutCancel(ctx), t, *spec.FromBackup)
	}
	if err != nil {
		err = s.provisionFailed(ctx, t, err)
		s.observe(t, map[bool]string{true: "unavailable", false: "failed"}[ErrorCode(err) == Unavailable], time.Since(start))
		return nil, nil, true, err
	}
	s.observe(t, "ready", time.Since(start))
	s.step("create:provisioned")
	s.Log.Info("tenant provisioned", "tenant_id", t.ID, "isolation", t.Isolation, "db_name", t.DBName, "schema_version", version, "spare", claimed, "duration", time.Since(start).Round(time.Millisecond))
	secret, hash, prefix := GenerateKey()
	ready, key, err := lock.FinishCreate(ctx, version, KeyRecord{Name: "initial", Prefix: prefix, Hash: hash})
	if err == nil {
		return ready, &NewAPIKey{APIKey: *key, Key: secret}, true, nil
	}
	// The tenant is provisioned: mark it ready on its own, as a retry would.
	s.Log.Error("marking the tenant ready with its initial API key failed; marking it ready alone", "tenant_id", t.ID, "err", err)
	ready, err = s.Catalog.SetProvisioning(ctx, t.ID, ProvisionReady, version, "")
	if err != nil {
		return nil, nil, true, err
	}
	newKey, err := s.CreateKey(ctx, t.ID, KeySpec{Name: "initial"})
	if err != nil {
		// The tenant is fine; an operator can issue a key at any time.
		s.Log.Error("tenant created without its initial API key", "tenant_id", t.ID, "err", err)
	}
	return ready, newKey, true, nil
}

// insert places t on a tenant server and inserts it, pending, under its
// lifecycle lock. A create that names no server and loses the server
// placement chose to concurrent creates (full by the time it inserts)
// chooses again, a few times.
func (s *Tenants) insert(ctx context.Context, t *Tenant, requested string, idem *IdempotencyRecord) (TenantLock, bool, error) {
	for attempt := 0; ; attempt++ {
		server, err := s.Placement.Choose(ctx, requested)
		if err != nil {
			return nil, false, err
		}
		t.Server = server
		opts := CreateOptions{DBPrefix: s.Provisioner.DBPrefix(), Server: server, Idempotency: idem}
		spares := s.sparesOf(server)
		if spares != nil && spares.Want > 0 && t.Isolation == IsolationDatabase {
			if tpl, err := spares.Provisioner.SpareTemplate(); err == nil {
				opts.SpareTemplate = tpl
			}
		}
		lock, claimed, err := s.Catalog.CreateTenantLocked(ctx, t, opts)
		if requested == "" && attempt < 3 && ErrorCode(err) == NoCapacity {
			continue
		}
		return lock, claimed, err
	}
}

// sparesOf returns tenant server name's spares, or nil.
func (s *Tenants) sparesOf(name string) *Spares {
	switch {
	case name == "" || name == DefaultServer:
		return s.Spares
	case s.SparesOn != nil:
		return s.SparesOn(name)
	}
	return nil
}

// Get returns one tenant.
func (s *Tenants) Get(ctx context.Context, id int64) (*Tenant, error) {
	return s.Catalog.Tenant(ctx, id)
}

// List returns a page of tenants and the total matching f.
func (s *Tenants) List(ctx context.Context, f TenantFilter) ([]Tenant, int, error) {
	fields := FieldErrors{}
	if f.Status != "" && f.Status != StatusActive && f.Status != StatusSuspended && f.Status != StatusDeleted {
		fields.Add("status", "must be one of: active, suspended, deleted")
	}
	if f.Limit == 0 {
		f.Limit = DefaultPageSize
	}
	if f.Limit < 1 || f.Limit > MaxPageSize {
		fields.Add("limit", fmt.Sprintf("must be between 1 and %d", MaxPageSize))
	}
	if f.Offset < 0 {
		fields.Add("offset", "must be at least 0")
	}
	if err := fields.Err(); err != nil {
		return nil, 0, err
	}
	return s.Catalog.ListTenants(ctx, f)
}

// Replace sets every writable field of tenant id to spec (PUT): fields left
// out take their defaults, as on create.
func (s *Tenants) Replace(ctx context.Context, id int64, spec TenantSpec) (*Tenant, error) {
	return s.update(ctx, id, func(TenantSpec) TenantSpec { return spec })
}

// Patch changes only the fields present in p (PATCH).
func (s *Tenants) Patch(ctx context.Context, id int64, p TenantPatch) (*Tenant, error) {
	return s.update(ctx, id, p.Apply)
}

// update applies change to the tenant's current spec under the row lock, so
// two concurrent patches never lose each other's fields.
func (s *Tenants) update(ctx context.Context, id int64, change func(TenantSpec) TenantSpec) (*Tenant, error) {
	return s.Catalog.UpdateTenant(ctx, id, func(t *Tenant) error {
		if t.Provisioning == ProvisionDeleting {
			return Errorf(Conflict, "tenant %d is being deleted", id)
		}
		if t.Status == StatusDeleted {
			return Errorf(Conflict, "tenant %d is deleted: undelete it first (POST /api/tenants/%d/undelete)", id, id)
		}
		spec := change(t.Spec())
		spec.Normalize(t.Isolation)
		if err := spec.Validate(); err != nil {
			return err
		}
		if spec.Isolation != t.Isolation {
			return FieldError("isolation", "cannot be changed after creation (it is "+string(t.Isolation)+")")
		}
		if spec.Server != "" && spec.Server != t.Server {
			return FieldError("server", "cannot be changed by an update (it is "+t.Server+"); a tenant changes server by a move")
		}
		if spec.FromBackup != nil {
			return FieldError("from_backup", "is for a create only; an existing tenant is restored by POST /api/tenants/{id}/restore")
		}
		t.apply(spec)
		return nil
	})
}

// Retry provisions a tenant whose provisioning failed (or was interrupted).
func (s *Tenants) Retry(ctx context.Context, id int64) (*Tenant, error) {
	t, err := s.Catalog.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	switch t.Provisioning {
	case ProvisionReady:
		return nil, Errorf(Conflict, "tenant %d is already provisioned", id)
	case ProvisionDeleting:
		return nil, Errorf(Conflict, "tenant %d is being deleted", id)
	}
	if err := s.Catalog.Record(ctx, "tenant.provision", id, t.Slug, nil); err != nil {
		return nil, err
	}
	return s.provision(ctx, id)
}

// CreateKey issues a new API key for tenant id; its secret is returned
// this once and only its hash is stored.
func (s *Tenants) CreateKey(ctx context.Context, id int64, spec KeySpec) (*NewAPIKey, error) {
	if err := ValidateStruct(&spec); err != nil {
		return nil, err
	}
	key, hash, prefix := GenerateKey()
	k, err := s.Keys.CreateAPIKey(ctx, id, spec.Name, prefix, hash)
	if err != nil {
		return nil, err
	}
	return &NewAPIKey{APIKey: *k, Key: key}, nil
}

// ListKeys lists tenant id's keys, without secrets.
func (s *Tenants) ListKeys(ctx context.Context, id int64) ([]APIKey, error) {
	if _, err := s.Catalog.Tenant(ctx, id); err != nil {
		return nil, err
	}
	return s.Keys.APIKeys(ctx, id)
}

// RevokeKey deletes a key; it stops working on the next request.
func (s *Tenants) RevokeKey(ctx context.Context, id, keyID int64) error {
	return s.Keys.DeleteAPIKey(ctx, id, keyID)
}

// Audit lists the operators' actions, newest first.
func (s *Tenants) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, int, error) {
	return s.Catalog.Audit(ctx, f)
}

// Delete deletes a suspended tenant, with a grace period: a final backup
// is taken (nothing changes if it fails), then the tenant is marked
// deleted (served to nobody, its slug and domain still taken) and its
// database closed to its own role; Purge drops it DeleteGrace later, and
// Undelete brings it back meanwhile. It returns the deleted tenant.
func (s *Tenants) Delete(ctx context.Context, id int64) (*Tenant, error) {
	return s.locked(ctx, id, s.deleteLocked)
}

// locked runs fn on tenant id under its lifecycle lock, detached from the
// request (a client that hangs up must not leave a step half done).
func (s *Tenants) locked(ctx context.Context, id int64, fn func(context.Context, *Tenant) (*Tenant, error)) (*Tenant, error) {
	ctx, cancel := s.detach(ctx)
	defer cancel()
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := s.Catalog.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	return fn(ctx, t)
}

func (s *Tenants) deleteLocked(ctx context.Context, t *Tenant) (*Tenant, error) {
	id := t.ID
	if err := deletable(t, false); err != nil {
		return nil, err
	}
	if s.FinalBackup != nil {
		// As long as the dump takes: PROVISION_TIMEOUT bounds a database's
		// creation, not a large tenant's backup.
		if err := s.FinalBackup(context.WithoutCancel(ctx), t); err != nil {
			return nil, &Error{Code: Unavailable, Message: fmt.Sprintf("tenant %d: the final backup failed, so nothing was deleted; retry, or delete at once with ?purge=now", id), Err: err}
		}
	}
	t, err := s.Catalog.UpdateTenant(ctx, id, func(t *Tenant) error {
		if err := deletable(t, false); err != nil {
			return err
		}
		now := time.Now()
		t.Status, t.DeletedAt = StatusDeleted, &now
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.Provisioner.Seal(ctx, t); err != nil {
		// Served to nobody already; the purge or an undelete finishes.
		s.Log.Error("closing a deleted tenant's database to its role failed", "tenant_id", id, "err", err)
	}
	return t, nil
}

// deletable says why t cannot be deleted (purge: at once), or nil.
func deletable(t *Tenant, purge bool) error {
	switch {
	case t.Provisioning == ProvisionDeleting:
		return nil // finishing an interrupted purge
	case t.Status == StatusSuspended, purge && t.Status == StatusDeleted:
		return nil
	case t.Status == StatusDeleted:
		return Errorf(Conflict, "tenant %d is deleted already (purged after the grace period, or at once with ?purge=now)", t.ID)
	}
	return Errorf(Conflict, `tenant %d is %s: suspend it first (PATCH {"status": "suspended"}), so that no live tenant loses its data by one call`, t.ID, t.Status)
}

// PurgeNow drops a suspended or deleted tenant's database and then its
// catalog row, at once (DELETE ?purge=now). The tenant is marked deleting
// first, so an interrupted purge is finished by the reconciler (or by
// calling it again) instead of leaving a row that points at a dropped
// database.
func (s *Tenants) PurgeNow(ctx context.Context, id int64) error {
	ctx, cancel := s.detach(ctx)
	defer cancel()
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return s.purgeLocked(ctx, id)
}

func (s *Tenants) purgeLocked(ctx context.Context, id int64) error {
	t, err := s.Catalog.UpdateTenant(ctx, id, func(t *Tenant) error {
		if err := deletable(t, true); err != nil {
			return err
		}
		t.Provisioning = ProvisionDeleting
		return nil
	})
	if err != nil {
		return err
	}
	return s.finishDelete(ctx, t)
}

// Undelete brings a deleted tenant back, suspended, before it is purged.
func (s *Tenants) Undelete(ctx context.Context, id int64) (*Tenant, error) {
	return s.locked(ctx, id, s.undeleteLocked)
}

func (s *Tenants) undeleteLocked(ctx context.Context, t *Tenant) (*Tenant, error) {
	id := t.ID
	if t.Status != StatusDeleted || t.Provisioning == ProvisionDeleting {
		return nil, Errorf(Conflict, "tenant %d is %s, not deleted", id, t.Status)
	}
	if err := s.Provisioner.Unseal(ctx, t); err != nil {
		return nil, err
	}
	return s.Catalog.UpdateTenant(ctx, id, func(t *Tenant) error {
		t.Status, t.DeletedAt = StatusSuspended, nil
		return nil
	})
}

// Purge drops the deleted tenants whose grace period has passed (a
// ReconcileStep); a tenant busy elsewhere waits for the next pass.
func (s *Tenants) Purge(ctx context.Context) (int, error) {
	list, _, err := s.Catalog.ListTenants(ctx, TenantFilter{Status: StatusDeleted, Limit: 1000})
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i := range list {
		t := &list[i]
		if t.DeletedAt == nil || time.Since(*t.DeletedAt) < s.DeleteGrace {
			continue
		}
		unlock, err := s.Catalog.LockTenant(ctx, t.ID)
		if ErrorCode(err) == Conflict {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = s.purgeLocked(ctx, t.ID)
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %d: %w", t.ID, err))
			continue
		}
		s.Log.Info("deleted tenant purged after its grace period", "tenant_id", t.ID, "deleted_at", t.DeletedAt)
		n++
	}
	return n, errors.Join(errs...)
}

func (s *Tenants) finishDelete(ctx context.Context, t *Tenant) error {
	if s.PurgeElsewhere != nil {
		if err := s.PurgeElsewhere(ctx, t); err != nil {
			return &Error{Code: Unavailable, Message: fmt.Sprintf("tenant %d: dropping the copies its moves left on other servers failed; the tenant stays marked deleting and the delete can be retried", t.ID), Err: err}
		}
	}
	if err := s.Provisioner.Deprovision(ctx, t); err != nil {
		return &Error{Code: Unavailable, Message: fmt.Sprintf("tenant %d: dropping %s %q failed; the tenant stays marked deleting and the delete can be retried", t.ID, t.Isolation, t.DBName), Err: err}
	}
	return s.Catalog.DeleteTenant(ctx, t.ID)
}

// provision runs (or re-runs) provisioning of tenant id under its lifecycle
// lock. On failure it drops whatever was created and records the error.
func (s *Tenants) provision(ctx context.Context, id int64) (*Tenant, error) {
	ctx, cancel := s.detach(ctx)
	defer cancel()
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := s.Catalog.SetProvisioning(ctx, id, ProvisionPending, 0, "")
	if err != nil {
		return nil, err
	}
	return s.provisionLocked(ctx, t)
}

// provisionLocked provisions t; the caller holds t's lifecycle lock.
func (s *Tenants) provisionLocked(ctx context.Context, t *Tenant) (*Tenant, error) {
	id := t.ID
	start := time.Now()
	version, err := s.Provisioner.Provision(ctx, t)
	if err == nil {
		s.Log.Info("tenant provisioned", "tenant_id", id, "isolation", t.Isolation, "db_name", t.DBName, "schema_version", version, "duration", time.Since(start).Round(time.Millisecond))
		return s.Catalog.SetProvisioning(ctx, id, ProvisionReady, version, "")
	}
	return nil, s.provisionFailed(ctx, t, err)
}

// provisionFailed undoes what a failed provisioning of t made, records the
// failure on t's row and returns the error to answer with. The caller holds
// t's lifecycle lock.
func (s *Tenants) provisionFailed(ctx context.Context, t *Tenant, err error) error {
	id := t.ID
	code := ProvisioningFailed
	if c := ErrorCode(err); c == Unavailable || c == TenantUnavailable {
		code = Unavailable // an outage: 503, retry later
	}
	cause := publicText(err)
	left := "It is recorded as failed with nothing left behind"
	if dropErr := s.Provisioner.Deprovision(ctx, t); dropErr != nil {
		// The row says failed either way; retry and delete are idempotent
		// and will find whatever is left.
		err = errors.Join(err, fmt.Errorf("cleanup: %w", dropErr))
		cause += " (cleanup also failed: " + publicText(dropErr) + ")"
		left = "It is recorded as failed; what was made could not be removed yet (a retry or a delete finds and removes it)"
	}
	s.Log.Error("tenant provisioning failed", "tenant_id", id, "isolation", t.Isolation, "db_name", t.DBName, "err", err)
	if _, recErr := s.Catalog.SetProvisioning(ctx, id, ProvisionFailed, 0, truncate(cause, 1000)); recErr != nil {
		err = errors.Join(err, recErr)
		left = "Recording the failure in the catalog failed too: the tenant stays pending until the reconciler takes it over"
	}
	return &Error{
		Code: code,
		Message: fmt.Sprintf("tenant %d could not be provisioned: %s. %s; fix the cause, then POST /api/tenants/%d/provision to retry",
			id, truncate(cause, 300), left, id),
		Err: err,
	}
}

// publicText is what an error may show a client and the tenant's
// last_error: a domain error's message (an outage's names no host), or the
// error's text (a server's refusal, a failed migration).
func publicText(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// Reconcile finishes what a crash left half-done: tenants still pending are
// provisioned (or cleaned up and marked failed), tenants being deleted are
// deleted. Tenants whose lock is held elsewhere are in progress and
// skipped. It is ReconcileOlder with no grace: for a start, and for tests.
func (s *Tenants) Reconcile(ctx context.Context) error {
	return s.ReconcileOlder(ctx, 0, nil)
}

// ReconcileOlder is Reconcile for the tenants left pending or deleting for
// longer than grace: younger ones may belong to a request still running
// (whose lock a catalog outage could have released). observe, if set,
// counts each repair by outcome: "ready", "failed", "deleted", "error".
func (s *Tenants) ReconcileOlder(ctx context.Context, grace time.Duration, observe func(outcome string)) error {
	ts, err := s.Catalog.TenantsByProvisioning(ctx, ProvisionPending, ProvisionDeleting)
	if err != nil {
		return err
	}
	if observe == nil {
		observe = func(string) {}
	}
	var errs []error
	for i := range ts {
		t := &ts[i]
		if grace > 0 && time.Since(t.UpdatedAt) < grace {
			continue
		}
		outcome := ""
		switch t.Provisioning {
		case ProvisionPending:
			s.Log.Info("reconcile: finishing interrupted provisioning", "tenant_id", t.ID)
			_, err = s.provision(ctx, t.ID)
			outcome = "ready"
			if ErrorCode(err) == ProvisioningFailed {
				outcome = "failed"
			}
		case ProvisionDeleting:
			s.Log.Info("reconcile: finishing interrupted delete", "tenant_id", t.ID)
			err = s.reconcileDelete(ctx, t.ID)
			outcome = "deleted"
		}
		switch {
		case ErrorCode(err) == Conflict:
			continue // someone holds it: in progress
		case err != nil && outcome != "failed":
			outcome = "error"
		}
		observe(outcome)
		if err != nil {
			s.Log.Error("reconcile: tenant not repaired", "tenant_id", t.ID, "outcome", outcome, "err", err)
			errs = append(errs, fmt.Errorf("tenant %d: %w", t.ID, err))
		} else {
			s.Log.Info("reconcile: tenant repaired", "tenant_id", t.ID, "outcome", outcome)
		}
	}
	return errors.Join(errs...)
}

func (s *Tenants) reconcileDelete(ctx context.Context, id int64) error {
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := s.Catalog.Tenant(ctx, id)
	if err != nil {
		return err
	}
	return s.finishDelete(ctx, t)
}

func (s *Tenants) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := s.ProvisionTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// apply copies the writable fields of spec (all but isolation) into t.
func (t *Tenant) apply(spec TenantSpec) {
	t.Name = spec.Name
	t.Slug = spec.Slug
	t.Domain = spec.Domain
	t.Status = spec.Status
	t.Timezone = spec.Timezone
	t.MaxExtensions = spec.MaxExtensions
	t.Settings = spec.Settings
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
