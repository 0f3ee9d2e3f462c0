// Package catalog is the tenant catalog on PostgreSQL (gorm): the
// implementation of controlplane.Catalog, plus opening and migrating the
// catalog database.
package catalog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
)

// Store implements controlplane.Catalog. It keeps its Cache current with
// every write it commits.
type Store struct {
	db    *gorm.DB
	cache *Cache
	keys  *KeyCache
	// OnRelease, if set, hears of a tenant whose cutover hold (a move's
	// or an online restore's) another process ended, before the requests
	// it held go on: the router drops its connections to the database
	// the tenant left (servers.Set.Reset).
	OnRelease func(t *controlplane.Tenant)
}

// NewStore returns a store on an open catalog database, with an empty
// cache; LoadCache fills it.
func NewStore(db *gorm.DB) *Store { return &Store{db: db, cache: NewCache(), keys: newKeyCache()} }

// Cache returns the in-memory catalog the store keeps current.
func (s *Store) Cache() *Cache { return s.cache }

// LoadCache reads the whole catalog (tenants and API keys) into memory.
func (s *Store) LoadCache(ctx context.Context) error {
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	var rows []tenantRow
	if err := s.db.WithContext(ctx).Order("id").Find(&rows).Error; err != nil {
		return translate(err)
	}
	ts := make([]controlplane.Tenant, len(rows))
	for i := range rows {
		ts[i] = rows[i].tenant()
	}
	s.cache.load(ts)
	return nil
}

var _ controlplane.Catalog = (*Store)(nil)

// tenantRow is the tenants table as gorm sees it. The domain type stays free
// of gorm; the two are converted at this boundary only.
type tenantRow struct {
	ID            int64      `gorm:"column:id;primaryKey"`
	Name          string     `gorm:"column:name"`
	Slug          string     `gorm:"column:slug"`
	Domain        string     `gorm:"column:domain"`
	Status        string     `gorm:"column:status"`
	Timezone      string     `gorm:"column:timezone"`
	MaxExtensions int        `gorm:"column:max_extensions"`
	Settings      string     `gorm:"column:settings;type:jsonb"`
	Isolation     string     `gorm:"column:isolation"`
	DBName        string     `gorm:"column:db_name"`
	Provisioning  string     `gorm:"column:provisioning"`
	SchemaVersion int64      `gorm:"column:schema_version"`
	LastError     string     `gorm:"column:last_error"`
	SchemaDirty   bool       `gorm:"column:schema_dirty"`
	MigratedAt    *time.Time `gorm:"column:migrated_at"`
	MigrationErr  string     `gorm:"column:migration_error"`
	Version       int64      `gorm:"column:version;default:(-)"`
	CreatedAt     time.Time  `gorm:"column:created_at"`
	UpdatedAt     time.Time  `gorm:"column:updated_at"`
	Server        string     `gorm:"column:server"`
	DeletedAt     *time.Time `gorm:"column:deleted_at"`
	HeldUntil     *time.Time `gorm:"column:held_until"`
}

func (tenantRow) TableName() string { return "tenants" }

func (r *tenantRow) tenant() controlplane.Tenant {
	return controlplane.Tenant{
		ID:             r.ID,
		Name:           r.Name,
		Slug:           r.Slug,
		Domain:         r.Domain,
		Status:         controlplane.Status(r.Status),
		Timezone:       r.Timezone,
		MaxExtensions:  r.MaxExtensions,
		Settings:       json.RawMessage(r.Settings),
		Isolation:      controlplane.Isolation(r.Isolation),
		DBName:         r.DBName,
		Provisioning:   controlplane.ProvisionState(r.Provisioning),
		SchemaVersion:  uint(r.SchemaVersion),
		LastError:      r.LastError,
		SchemaDirty:    r.SchemaDirty,
		MigratedAt:     r.MigratedAt,
		MigrationError: r.MigrationErr,
		CreatedAt:      r.CreatedAt,
		UpdatedAt:      r.UpdatedAt,
		Server:         r.Server,
		Version:        r.Version,
		DeletedAt:      r.DeletedAt,
		HeldUntil:      r.HeldUntil,
	}
}

func rowOf(t *controlplane.Tenant) tenantRow {
	return tenantRow{
		ID:            t.ID,
		Name:          t.Name,
		Slug:          t.Slug,
		Domain:        t.Domain,
		Status:        string(t.Status),
		Timezone:      t.Timezone,
		MaxExtensions: t.MaxExtensions,
		Settings:      string(t.Settings),
		Isolation:     string(t.Isolation),
		DBName:        t.DBName,
		Provisioning:  string(t.Provisioning),
		SchemaVersion: int64(t.SchemaVersion),
		LastError:     t.LastError,
		DeletedAt:     t.DeletedAt,
	}
}

// NextTenantID reserves an id from the tenants sequence.
func (s *Store) NextTenantID(ctx context.Context) (int64, error) {
	var id int64
	err := s.db.WithContext(ctx).Raw(`SELECT nextval(pg_get_serial_sequence('tenants', 'id'))`).Scan(&id).Error
	return id, translate(err)
}

// CreateTenant inserts t (with its reserved id) and fills its timestamps.
func (s *Store) CreateTenant(ctx context.Context, t *controlplane.Tenant) error {
	diff, err := json.Marshal(controlplane.TenantDiff(nil, t))
	if err != nil {
		return err
	}
	// The row and its audit entry in one statement: one round trip, one
	// transaction.
	var row tenantRow
	err = s.db.WithContext(ctx).Raw(`
		WITH ins AS (
			INSERT INTO tenants (id, name, slug, domain, status, timezone, max_extensions, settings, isolation, db_name, provisioning)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)
			RETURNING *
		), aud AS (
			INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
			SELECT now(), $12, 'tenant.create', id, slug, $13::jsonb FROM ins
		)
		SELECT * FROM ins`,
		t.ID, t.Name, t.Slug, t.Domain, string(t.Status), t.Timezone, t.MaxExtensions, string(t.Settings),
		string(t.Isolation), t.DBName, string(t.Provisioning), controlplane.ActorFrom(ctx), string(diff)).Scan(&row).Error
	if err != nil {
		return translate(err)
	}
	*t = row.tenant()
	s.cache.put(*t)
	return nil
}

// Tenant returns tenant id.
func (s *Store) Tenant(ctx context.Context, id int64) (*controlplane.Tenant, error) {
	var row tenantRow
	if err := s.db.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translateTenant(err, id)
	}
	t := row.tenant()
	return &t, nil
}

// ListTenants returns a page of tenants ordered by id, and the total.
func (s *Store) ListTenants(ctx context.Context, f controlplane.TenantFilter) ([]controlplane.Tenant, int, error) {
	q := s.db.WithContext(ctx).Model(&tenantRow{})
	if f.Server != "" {
		q = q.Where("server = ?", f.Server)
	}
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.SchemaVersionLT != nil {
		q = q.Where("schema_version < ?", int64(*f.SchemaVersionLT))
	}
	if f.Dirty != nil {
		q = q.Where("schema_dirty = ?", *f.Dirty)
	}
	if f.Query != "" {
		like := sqlerr.LikeContains(strings.ToLower(f.Query))
		q = q.Where("(lower(name) LIKE ? OR slug LIKE ? OR domain LIKE ?)", like, like, like)
	}
	var total int64
	if err := q.Count(&total).Error; err != nil {
		return nil, 0, translate(err)
	}
	var rows []tenantRow
	if err := q.Order("id").Limit(f.Limit).Offset(f.Offset).Find(&rows).Error; err != nil {
		return nil, 0, translate(err)
	}
	out := make([]controlplane.Tenant, len(rows))
	for i := range rows {
		out[i] = rows[i].tenant()
	}
	return out, int(total), nil
}

// UpdateTenant applies fn to the row under SELECT ... FOR UPDATE.
func (s *Store) UpdateTenant(ctx context.Context, id int64, fn func(*controlplane.Tenant) error) (*controlplane.Tenant, error) {
	var out controlplane.Tenant
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row tenantRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&row, id).Error; err != nil {
			return translateTenant(err, id)
		}
		before := row.tenant()
		t := row.tenant()
		if err := fn(&t); err != nil {
			return err
		}
		if err := auditUpdate(ctx, tx, &before, &t); err != nil {
			return err
		}
		next := rowOf(&t)
		err := tx.Model(&row).Updates(map[string]any{
			"name":           next.Name,
			"slug":           next.Slug,
			"domain":         next.Domain,
			"status":         next.Status,
			"timezone":       next.Timezone,
			"max_extensions": next.MaxExtensions,
			"settings":       next.Settings,
			"provisioning":   next.Provisioning,
			"deleted_at":     next.DeletedAt,
			"updated_at":     gorm.Expr("now()"),
			"version":        gorm.Expr("nextval('tenant_versions')"),
		}).Error
		if err != nil {
			return translate(err)
		}
		if err := tx.First(&row, id).Error; err != nil {
			return translate(err)
		}
		out = row.tenant()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.cache.put(out)
	return &out, nil
}

// auditUpdate records what an update changed, named for what it means to
// an operator: a suspension, a reactivation, the start of a delete, or an
// update. Nothing changed, nothing recorded.
func auditUpdate(ctx context.Context, tx *gorm.DB, before, after *controlplane.Tenant) error {
	diff := controlplane.TenantDiff(before, after)
	action := "tenant.update"
	switch {
	case after.Provisioning == controlplane.ProvisionDeleting && before.Provisioning != controlplane.ProvisionDeleting:
		action, diff = "tenant.delete", controlplane.TenantDiff(before, nil)
	case len(diff) == 0:
		return nil
	case len(diff) == 1 && before.Status != after.Status && after.Status == controlplane.StatusSuspended:
		action = "tenant.suspend"
	case len(diff) == 1 && before.Status != after.Status:
		action = "tenant.activate"
	}
	return audit(ctx, tx, action, after.ID, after.Slug, diff)
}

// SetProvisioning records a provisioning state, version and error.
func (s *Store) SetProvisioning(ctx context.Context, id int64, state controlplane.ProvisionState, version uint, lastError string) (*controlplane.Tenant, error) {
	var row tenantRow
	changes := map[string]any{
		"provisioning":   string(state),
		"schema_version": int64(version),
		"last_error":     lastError,
		"updated_at":     gorm.Expr("now()"),
		"version":        gorm.Expr("nextval('tenant_versions')"),
	}
	if state == controlplane.ProvisionReady {
		// A fresh database is migrated and clean.
		changes["schema_dirty"], changes["migration_error"], changes["migrated_at"] = false, "", gorm.Expr("now()")
	}
	res := s.db.WithContext(ctx).Model(&row).Clauses(clause.Returning{}).Where("id = ?", id).Updates(changes)
	if res.Error != nil {
		return nil, translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return nil, controlplane.Errorf(controlplane.NotFound, "tenant %d not found", id)
	}
	t := row.tenant()
	s.cache.put(t)
	return &t, nil
}

// DeleteTenant removes the catalog row.
func (s *Store) DeleteTenant(ctx context.Context, id int64) error {
	res := s.db.WithContext(ctx).Delete(&tenantRow{}, id)
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return controlplane.Errorf(controlplane.NotFound, "tenant %d not found", id)
	}
	s.cache.remove(id)
	return nil
}

// TenantsByProvisioning returns every tenant in one of states, by id.
func (s *Store) TenantsByProvisioning(ctx context.Context, states ...controlplane.ProvisionState) ([]controlplane.Tenant, error) {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	var rows []tenantRow
	if err := s.db.WithContext(ctx).Where("provisioning IN ?", names).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err)
	}
	out := make([]controlplane.Tenant, len(rows))
	for i := range rows {
		out[i] = rows[i].tenant()
	}
	return out, nil
}

// TenantLockClass is the first key of the two-key advisory locks on
// tenant lifecycles (the tenant's id is the second: classid and objid in
// pg_locks, where the crash tests look for a killed process's). Two-key
// locks live apart from the one-key (bigint) locks that golang-migrate
// takes, so the two can never collide.
const TenantLockClass = 0x4c43 // "LC"

// LockTenant takes a session-level advisory lock on a dedicated connection:
// it is held across the provisioning round trips and released when unlock
// runs or, if this process dies, when its connection closes. It does not
// wait: a lock held elsewhere is a Conflict.
func (s *Store) LockTenant(ctx context.Context, id int64) (func(), error) {
	return s.lockTenant(ctx, id, false)
}

// LockTenantWait is LockTenant that waits for the lock (until ctx ends):
// the fleet migrator queues behind whoever works on the tenant.
func (s *Store) LockTenantWait(ctx context.Context, id int64) (func(), error) {
	return s.lockTenant(ctx, id, true)
}

func (s *Store) lockTenant(ctx context.Context, id int64, wait bool) (func(), error) {
	unlock, ok, err := s.advisoryLock(ctx, TenantLockClass, int32(id), wait) // ids stay far below 2^31; a wrap would only share a lock
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, controlplane.Errorf(controlplane.Conflict, "tenant %d is being provisioned or deleted by another request; try again shortly", id)
	}
	return unlock, nil
}

// reconcilerClass is the first key of the lock one replica's reconciler
// holds for a pass.
const reconcilerClass = 0x5243 // "RC"

// TryLockReconciler takes, without waiting, the lock of a reconciler pass:
// one replica at a time repairs the fleet. ok is false when another holds
// it.
func (s *Store) TryLockReconciler(ctx context.Context) (unlock func(), ok bool, err error) {
	return s.advisoryLock(ctx, reconcilerClass, 0, false)
}

// advisoryLock takes the session advisory lock (class, key) on a catalog
// connection of its own, held until unlock; without wait, ok is false when
// another session holds it.
func (s *Store) advisoryLock(ctx context.Context, class, key int32, wait bool) (unlock func(), ok bool, err error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, false, translate(err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, false, translate(err)
	}
	if wait {
		_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, $2)`, class, key)
		ok = err == nil
	} else {
		err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, $2)`, class, key).Scan(&ok)
	}
	if err != nil {
		// Whether the lock was taken is unknown (a wait cut short by ctx):
		// drop the connection rather than return a locked session to the pool.
		discard(conn)
		return nil, false, translate(err)
	}
	if !ok {
		_ = conn.Close()
		return nil, false, nil
	}
	return func() {
		// Unlock with a fresh context: the caller's may be done already.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, $2)`, class, key); err != nil {
			// Closing a connection whose unlock failed would return a
			// locked session to the pool; discard it instead.
			discard(conn)
			return
		}
		_ = conn.Close()
	}, true, nil
}

// discard closes conn's session for good instead of returning it to the
// pool (database/sql drops a connection whose Raw returns ErrBadConn).
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// tenantConstraints names the catalog's constraints by the API field they
// protect (see migrations/catalog).
var tenantConstraints = sqlerr.Register(sqlerr.Catalog, map[string]sqlerr.Constraint{
	"tenants_slug_key":             {Field: "slug", Reason: "is already taken by another tenant"},
	"tenants_domain_key":           {Field: "domain", Reason: "is already taken by another tenant"},
	"tenants_name_length":          {Field: "name", Reason: "must be 1 to 200 characters"},
	"tenants_slug_format":          {Field: "slug", Reason: "is not a valid slug"},
	"tenants_domain_lower":         {Field: "domain", Reason: "must be lower-case"},
	"tenants_status_check":         {Field: "status", Reason: "must be one of: active, suspended"},
	"tenants_max_extensions_range": {Field: "max_extensions", Reason: "must be between 0 and 100000"},
	"tenants_settings_array":       {Field: "settings", Reason: "must be a JSON array"},
	"tenants_isolation_check":      {Field: "isolation", Reason: "must be one of: database, schema"},
	"tenant_api_keys_name_length":  {Field: "name", Reason: "must be at most 200 characters"},
})

func translate(err error) error { return sqlerr.Translate(err, tenantConstraints) }

func translateTenant(err error, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "tenant %d not found", id)
	}
	return translate(err)
}

// Identity returns the catalog's unique id, created by its first migration.
func (s *Store) Identity(ctx context.Context) (string, error) {
	var id string
	err := s.db.WithContext(ctx).Raw(`SELECT id::text FROM catalog_identity`).Scan(&id).Error
	if err == nil && id == "" {
		err = errors.New("catalog_identity is empty")
	}
	return id, translate(err)
}

// RecordMigration stores what a migration run found and left in a tenant's
// migrations table: its version, dirty flag and error (empty on success).
// A run that changed the version, or failed, is also an audit entry. One
// statement; the fleet records many tenants per statement with
// RecordMigrations.
func (s *Store) RecordMigration(ctx context.Context, id int64, version uint, dirty bool, migErr string) error {
	found, err := s.RecordMigrations(ctx, []controlplane.MigrationRecord{{TenantID: id, Version: version, Dirty: dirty, Error: migErr}})
	if err != nil {
		return err
	}
	if !found[0] {
		return controlplane.Errorf(controlplane.NotFound, "tenant %d not found", id)
	}
	return nil
}

// SchemaVersions counts ready tenants by schema version, and the dirty ones.
func (s *Store) SchemaVersions(ctx context.Context) (map[uint]int, int, error) {
	var rows []struct {
		SchemaVersion int64
		Dirty         bool
		N             int
	}
	err := s.db.WithContext(ctx).Raw(`SELECT schema_version, schema_dirty AS dirty, count(*) AS n FROM tenants
		WHERE provisioning = 'ready' GROUP BY 1, 2`).Scan(&rows).Error
	if err != nil {
		return nil, 0, translate(err)
	}
	counts, dirty := map[uint]int{}, 0
	for _, r := range rows {
		counts[uint(r.SchemaVersion)] += r.N
		if r.Dirty {
			dirty += r.N
		}
	}
	return counts, dirty, nil
}
