package controlplane

import (
	"cmp"
	"encoding/json"
	"time"
)

// Status is the operator's switch on a tenant.
type Status string

// Tenant statuses. A suspended tenant keeps its data but its traffic is
// refused; only a suspended tenant can be deleted.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	// StatusDeleted is a tenant deleted within its grace period: served
	// to nobody, its data kept, undeletable until purged (never set by
	// PUT or PATCH: DELETE and undelete set it).
	StatusDeleted Status = "deleted"
)

// Isolation says where a tenant's data lives.
type Isolation string

// Isolation modes: a dedicated database (hard physical isolation, the
// default) or a dedicated schema in a shared database (cheaper).
const (
	IsolationDatabase Isolation = "database"
	IsolationSchema   Isolation = "schema"
)

// ProvisionState tracks the creation of a tenant's database. It is
// read-only for operators and separate from Status.
type ProvisionState string

// Provisioning states. Only a ready tenant has a usable database. pending and
// deleting are intermediate: a process that dies in them leaves work that the
// reconciler finishes at the next start.
const (
	ProvisionPending  ProvisionState = "pending"
	ProvisionReady    ProvisionState = "ready"
	ProvisionFailed   ProvisionState = "failed"
	ProvisionDeleting ProvisionState = "deleting"
	// ProvisionMoving is a tenant an offline move copies to another
	// server: answered 503 with Retry-After meanwhile, ready again on
	// whichever server the move leaves it.
	ProvisionMoving ProvisionState = "moving"
)

// Tenant is one customer account, as kept in the catalog.
type Tenant struct {
	ID            int64           `json:"id"`
	Name          string          `json:"name"`
	Slug          string          `json:"slug"`
	Domain        string          `json:"domain"`
	Status        Status          `json:"status"`
	Timezone      string          `json:"timezone"`
	MaxExtensions int             `json:"max_extensions"`
	Settings      json.RawMessage `json:"settings"`
	Isolation     Isolation       `json:"isolation"`
	// Server is the tenant server (the registry's name) its database or
	// schema lives on, chosen at creation.
	Server string `json:"server"`
	// DBName is the tenant's database (database mode) or schema (schema
	// mode), derived from ID at creation and never changed afterwards.
	DBName        string         `json:"db_name"`
	Provisioning  ProvisionState `json:"provisioning"`
	SchemaVersion uint           `json:"schema_version"`
	// SchemaDirty mirrors the dirty flag of the tenant's migrations table:
	// a migration failed half-way and the tenant needs a repair (see
	// docs/MIGRATIONS.md).
	SchemaDirty    bool       `json:"schema_dirty"`
	MigratedAt     *time.Time `json:"migrated_at"`
	MigrationError string     `json:"migration_error"`
	LastError      string     `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// DeletedAt is when a deleted tenant was deleted: it is purged
	// TENANT_DELETE_GRACE later.
	DeletedAt *time.Time `json:"deleted_at"`
	// HeldUntil, while set and ahead, holds the tenant's new requests: an
	// online move's cutover (they wait for it to end, then go to whichever
	// server the tenant is on).
	HeldUntil *time.Time `json:"held_until,omitempty"`
	// Version orders the writes of the catalog (see catalog.Cache).
	Version int64 `json:"-"`
}

// ServerName is t's server, DefaultServer for a tenant value made without
// one (the catalog always names it).
func (t *Tenant) ServerName() string { return cmp.Or(t.Server, DefaultServer) }

// Spec returns the writable fields of t.
func (t *Tenant) Spec() TenantSpec {
	return TenantSpec{
		Name:          t.Name,
		Slug:          t.Slug,
		Domain:        t.Domain,
		Status:        t.Status,
		Timezone:      t.Timezone,
		MaxExtensions: t.MaxExtensions,
		Settings:      t.Settings,
		Isolation:     t.Isolation,
		Server:        t.Server,
	}
}

// TenantSpec is what an operator writes: the fields of a create (POST) or a
// full replace (PUT); start from NewTenantSpec for the defaults. Isolation
// may be given on create only; on update it must equal the tenant's.
type TenantSpec struct {
	Name          string          `json:"name" validate:"required,max=200"`
	Slug          string          `json:"slug" validate:"required,max=63,slug"`
	Domain        string          `json:"domain" validate:"required,max=253,hostname_strict"`
	Status        Status          `json:"status" validate:"oneof=active suspended"`
	Timezone      string          `json:"timezone" validate:"required,iana_tz"`
	MaxExtensions int             `json:"max_extensions" validate:"min=0,max=100000"`
	Settings      json.RawMessage `json:"settings" validate:"json_array"`
	Isolation     Isolation       `json:"isolation" validate:"oneof=database schema"`
	// Server, on create, names the tenant server to place the tenant on
	// (else placement chooses); on update it must equal the tenant's.
	Server string `json:"server,omitempty" validate:"omitempty,max=63,slug"`
	// FromBackup, on create only, makes the tenant a copy of a backup's
	// data (any tenant's: a copy for support or staging), restored before
	// it is first served.
	FromBackup *int64 `json:"from_backup,omitempty" validate:"omitempty,min=1"`
}

// Defaults for fields a create or a replace leaves out.
const (
	DefaultTimezone      = "UTC"
	DefaultMaxExtensions = 100
)

// TenantPatch is a partial update (PATCH): nil fields are left as they are.
type TenantPatch struct {
	Name          *string          `json:"name"`
	Slug          *string          `json:"slug"`
	Domain        *string          `json:"domain"`
	Status        *Status          `json:"status"`
	Timezone      *string          `json:"timezone"`
	MaxExtensions *int             `json:"max_extensions"`
	Settings      *json.RawMessage `json:"settings"`
	Isolation     *Isolation       `json:"isolation"`
}

// Set is one field of a patch: a value sent (src not nil) replaces dst's,
// a field left out keeps it. Every resource's Patch.Apply is made of these.
func Set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// Apply returns spec with the patch's fields laid over it.
func (p TenantPatch) Apply(spec TenantSpec) TenantSpec {
	set := Set[string]
	set(&spec.Name, p.Name)
	set(&spec.Slug, p.Slug)
	set(&spec.Domain, p.Domain)
	set(&spec.Timezone, p.Timezone)
	if p.Status != nil {
		spec.Status = *p.Status
	}
	if p.MaxExtensions != nil {
		spec.MaxExtensions = *p.MaxExtensions
	}
	if p.Settings != nil {
		spec.Settings = *p.Settings
	}
	if p.Isolation != nil {
		spec.Isolation = *p.Isolation
	}
	return spec
}

// TenantFilter selects and pages the tenant list. The order is always by id,
// so pages are stable while tenants are added.
type TenantFilter struct {
	Status Status // "" for any
	Server string // "" for any
	Query  string // substring of name, slug or domain, case-insensitive
	// SchemaVersionLT, if set, selects tenants whose schema is older.
	SchemaVersionLT *uint
	// Dirty, if set, selects tenants by their schema's dirty flag.
	Dirty  *bool
	Limit  int
	Offset int
}

// Page limits for lists.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)
