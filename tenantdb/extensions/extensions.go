// Package extensions is a tenant's SIP extensions: the endpoints its agents
// register devices against. It lives in the tenant's own database (or
// schema) and enforces the tenant's hard cap on how many it may have.
package extensions

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// Extension is what the API returns. The password is write-only: only
// whether a usable one is set is shown.
type Extension struct {
	ID               int64   `json:"id"`
	Number           string  `json:"number"`
	Name             string  `json:"name"`
	Enabled          bool    `json:"enabled"`
	OutboundCallerID *string `json:"outbound_caller_id"`
	// PasswordSet is true when digests exist for the tenant's current
	// domain. A domain rename makes it false until the password is set again.
	PasswordSet bool      `json:"password_set"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Spec is a create (POST) or full replace (PUT); start from NewSpec.
type Spec struct {
	Number           string  `json:"number" validate:"required,ext_number"`
	Name             string  `json:"name" validate:"max=200"`
	Enabled          bool    `json:"enabled"`
	Password         *string `json:"password" validate:"omitempty,min=8,max=128"`
	OutboundCallerID *string `json:"outbound_caller_id" validate:"omitempty,e164"`
}

// NewSpec returns the defaults of a new extension.
func NewSpec() Spec { return Spec{Enabled: true} }

// Patch is a partial update; nil fields stay as they are. An empty
// outbound_caller_id clears it.
type Patch struct {
	Number           *string `json:"number"`
	Name             *string `json:"name"`
	Enabled          *bool   `json:"enabled"`
	Password         *string `json:"password"`
	OutboundCallerID *string `json:"outbound_caller_id"`
}

// extension is the table row. In schema mode the router's handle qualifies
// its table with the tenant's schema in every gorm statement; raw SQL must
// name tables with query.Table: never hard-code a table name here.
type extension struct {
	ID               int64
	Number           string
	Name             string
	Enabled          bool
	OutboundCallerID *string
	HA1MD5           *string `gorm:"column:ha1_md5"`
	HA1SHA256        *string `gorm:"column:ha1_sha256"`
	HA1Realm         *string `gorm:"column:ha1_realm"`
	CreatedAt        time.Time
	UpdatedAt        time.Time `gorm:"autoUpdateTime:false"` // set at database precision by the store
}

// TableName is the bare table name; the router qualifies it with a schema
// tenant's schema per statement (tenantdb.qualifyTables).
func (extension) TableName(n schema.Namer) string { return n.TableName("Extension") }

func (e *extension) public(realm string) Extension {
	return Extension{
		ID: e.ID, Number: e.Number, Name: e.Name, Enabled: e.Enabled,
		OutboundCallerID: e.OutboundCallerID,
		PasswordSet:      e.HA1Realm != nil && *e.HA1Realm == realm,
		CreatedAt:        e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

// Store is one tenant's extensions. Tenant is the catalog snapshot of the
// current request: its domain is the SIP realm, its max_extensions the cap.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"extensions_number_key":                {Field: "number", Reason: "is already used by another extension of this tenant"},
	"extensions_number_format":             {Field: "number", Reason: "must be 2 to 7 digits"},
	"extensions_outbound_caller_id_format": {Field: "outbound_caller_id", Reason: "must be an E.164 number"},
	"dids_target_extension_fkey":           {Field: "id", Reason: "is the target of a DID number; re-point or delete the DID first"},
})

func translate(err error, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "extension %d not found", id)
	}
	return sqlerr.TranslateTenant(err, constraints)
}

// Create adds an extension unless the tenant is at its cap or the number is
// a queue's dial number. The checks and the insert run under the tenant's
// number-space lock, so concurrent creates at cap−1 give exactly one
// success; disabled extensions count.
func (s *Store) Create(ctx context.Context, spec Spec) (*Extension, error) {
	if err := controlplane.ValidateStruct(&spec); err != nil {
		return nil, err
	}
	// Timestamps at the database's precision, so the create response and a
	// later read show the same instant.
	now := query.Now()
	row := extension{Number: spec.Number, Name: spec.Name, Enabled: spec.Enabled, OutboundCallerID: spec.OutboundCallerID, CreatedAt: now, UpdatedAt: now}
	if spec.Password != nil {
		row.setPassword(*spec.Password, s.Tenant.Domain)
	}
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := query.LockNumberSpace(tx, s.Tenant.ID); err != nil {
			return err
		}
		if err := checkQueueClash(tx, spec.Number); err != nil {
			return err
		}
		var n int64
		if err := tx.Model(&extension{}).Count(&n).Error; err != nil {
			return err
		}
		if n >= int64(s.Tenant.MaxExtensions) {
			return controlplane.Errorf(controlplane.QuotaExceeded,
				"tenant %s has %d extensions and its cap is max_extensions=%d; delete one or raise the cap", s.Tenant.Slug, n, s.Tenant.MaxExtensions)
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		return nil, translate(err, 0)
	}
	out := row.public(s.Tenant.Domain)
	return &out, nil
}

// Get returns one extension.
func (s *Store) Get(ctx context.Context, id int64) (*Extension, error) {
	var row extension
	if err := s.DB.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translate(err, id)
	}
	out := row.public(s.Tenant.Domain)
	return &out, nil
}

// List returns a page of extensions ordered by number, and the total.
func (s *Store) List(ctx context.Context, limit, offset int) ([]Extension, int, error) {
	rows, total, err := query.Page[extension](s.DB.WithContext(ctx).Model(&extension{}), "number", limit, offset)
	if err != nil {
		return nil, 0, translate(err, 0)
	}
	return query.Map(rows, func(e *extension) Extension { return e.public(s.Tenant.Domain) }), total, nil
}

// Replace sets every field of extension id to spec (PUT). A password left
// out keeps the current one, unless the number changes: the digest covers
// the number, so a new number needs the password again.
func (s *Store) Replace(ctx context.Context, id int64, spec Spec) (*Extension, error) {
	return s.update(ctx, id, func(Spec) Spec { return spec })
}

// Patch changes the fields present in p (PATCH).
func (s *Store) Patch(ctx context.Context, id int64, p Patch) (*Extension, error) {
	return s.update(ctx, id, p.Apply)
}

func (s *Store) update(ctx context.Context, id int64, change func(Spec) Spec) (*Extension, error) {
	var row extension
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&row, id).Error; err != nil {
			return err
		}
		spec := change(Spec{Number: row.Number, Name: row.Name, Enabled: row.Enabled, OutboundCallerID: row.OutboundCallerID})
		if err := controlplane.ValidateStruct(&spec); err != nil {
			return err
		}
		if spec.Number != row.Number {
			if spec.Password == nil && row.HA1MD5 != nil {
				return controlplane.FieldError("password", "is required when the number changes: the SIP digest covers the number")
			}
			if err := query.LockNumberSpace(tx, s.Tenant.ID); err != nil {
				return err
			}
			if err := checkQueueClash(tx, spec.Number); err != nil {
				return err
			}
		}
		row.Number, row.Name, row.Enabled, row.OutboundCallerID = spec.Number, spec.Name, spec.Enabled, spec.OutboundCallerID
		if spec.Password != nil {
			row.setPassword(*spec.Password, s.Tenant.Domain)
		}
		row.UpdatedAt = query.Now()
		return tx.Select("*").Omit("id", "created_at").Updates(&row).Error
	})
	if err != nil {
		return nil, translate(err, id)
	}
	out := row.public(s.Tenant.Domain)
	return &out, nil
}

// Delete removes an extension; its queue memberships go with it. One that a
// DID routes to is kept (409) until the DID is re-pointed.
func (s *Store) Delete(ctx context.Context, id int64) error {
	res := s.DB.WithContext(ctx).Delete(&extension{}, id)
	return query.Deleted(res, func(err error) error { return sqlerr.Referenced(translate(err, id)) }, fmt.Sprintf("extension %d", id))
}

// checkQueueClash refuses an extension number that is a queue's dial
// number; the caller holds the number-space lock.
func checkQueueClash(tx *gorm.DB, number string) error {
	var n int64
	if err := tx.Raw(`SELECT count(*) FROM `+query.Table(tx, "queues")+` WHERE extension = ?`, number).Scan(&n).Error; err != nil {
		return err
	}
	if n > 0 {
		return &controlplane.Error{Code: controlplane.Conflict, Message: "number " + number + " is the dial number of a call queue",
			Fields: map[string]string{"number": "is the dial number of a call queue"}}
	}
	return nil
}

// setPassword stores the HA1 digests of password for realm, never the
// password: MD5 (RFC 2617) and SHA-256 (RFC 8760) of number:realm:password.
func (e *extension) setPassword(password, realm string) {
	in := e.Number + ":" + realm + ":" + password
	m := md5.Sum([]byte(in))
	h := sha256.Sum256([]byte(in))
	md5hex, shahex := hex.EncodeToString(m[:]), hex.EncodeToString(h[:])
	e.HA1MD5, e.HA1SHA256, e.HA1Realm = &md5hex, &shahex, &realm
}

// String keeps digests out of any accidental %v.
func (e extension) String() string { return fmt.Sprintf("extension %d (%s)", e.ID, e.Number) }

// Apply is cur with the fields p sends: an empty outbound_caller_id
// clears it, and a password sent is set again (left out, it is kept).
func (p Patch) Apply(cur Spec) Spec {
	controlplane.Set(&cur.Number, p.Number)
	controlplane.Set(&cur.Name, p.Name)
	controlplane.Set(&cur.Enabled, p.Enabled)
	if p.OutboundCallerID != nil {
		cur.OutboundCallerID = p.OutboundCallerID
		if *p.OutboundCallerID == "" {
			cur.OutboundCallerID = nil
		}
	}
	cur.Password = p.Password
	return cur
}
