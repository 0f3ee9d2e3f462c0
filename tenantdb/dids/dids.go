// Package dids is a tenant's DID numbers: the inbound phone numbers that
// route calls into the tenant, to an extension or a queue. A number belongs
// to one tenant across the whole platform; the catalog keeps that global
// index (controlplane.DIDIndex) and Service keeps the two consistent.
package dids

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// DID is what the API returns.
type DID struct {
	ID          int64     `json:"id"`
	Number      string    `json:"number"`
	TargetType  string    `json:"target_type"`
	TargetID    *int64    `json:"target_id"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Spec is a create (POST) or replace (PUT); start from NewSpec. The number
// is written with or without spaces, dashes, dots and parentheses; it is
// stored as bare E.164.
type Spec struct {
	Number      string `json:"number" validate:"required,e164"`
	TargetType  string `json:"target_type" validate:"oneof=none extension queue"`
	TargetID    *int64 `json:"target_id" validate:"omitempty,min=1"`
	Description string `json:"description" validate:"max=500"`
}

// NewSpec returns a DID's defaults: routed nowhere yet.
func NewSpec() Spec { return Spec{TargetType: "none"} }

// Patch is a partial update. Setting target_type to none clears target_id.
type Patch struct {
	Number      *string `json:"number"`
	TargetType  *string `json:"target_type"`
	TargetID    *int64  `json:"target_id"`
	Description *string `json:"description"`
}

func (s *Spec) target() controlplane.DIDTarget {
	return controlplane.DIDTarget{Type: s.TargetType, ID: s.TargetID}
}

// validate normalises the number and checks the target's shape; that the
// target exists in this tenant is the foreign keys' job.
func (s *Spec) validate() error {
	s.Number = controlplane.NormalizeE164(s.Number)
	if err := controlplane.ValidateStruct(s); err != nil {
		return err
	}
	switch {
	case s.TargetType == "none" && s.TargetID != nil:
		return controlplane.FieldError("target_id", "must be left out when target_type is none")
	case s.TargetType != "none" && s.TargetID == nil:
		return controlplane.FieldError("target_id", "is required when target_type is "+s.TargetType)
	}
	return nil
}

type did struct {
	ID          int64
	Number      string
	TargetType  string
	TargetID    *int64
	Description string
	CreatedAt   time.Time
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"` // set at database precision by the store
}

// TableName is the bare table name; the router qualifies it with a schema
// tenant's schema per statement (tenantdb.qualifyTables).
func (did) TableName(n schema.Namer) string { return n.TableName("Did") }

func (d *did) public() *DID {
	return &DID{ID: d.ID, Number: d.Number, TargetType: d.TargetType, TargetID: d.TargetID, Description: d.Description, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

func (d *did) target() controlplane.DIDTarget {
	return controlplane.DIDTarget{Type: d.TargetType, ID: d.TargetID}
}

// Store is one tenant's DIDs in its own database.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"dids_number_key":             {Field: "number", Reason: "already exists in this tenant"},
	"dids_number_format":          {Field: "number", Reason: "must be an E.164 number"},
	"dids_target_type_valid":      {Field: "target_type", Reason: "must be one of: none, extension, queue"},
	"dids_target_id_matches_type": {Field: "target_id", Reason: "must be given exactly when target_type is not none"},
	"dids_target_extension_fkey":  {Field: "target_id", Reason: "is not an extension of this tenant"},
	"dids_target_queue_fkey":      {Field: "target_id", Reason: "is not a queue of this tenant"},
})

func translate(err error, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "DID %d not found", id)
	}
	return sqlerr.TranslateTenant(err, constraints)
}

// Get returns one DID.
func (s *Store) Get(ctx context.Context, id int64) (*DID, error) {
	row, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return row.public(), nil
}

// List returns a page of DIDs ordered by number, and the total.
func (s *Store) List(ctx context.Context, limit, offset int) ([]DID, int, error) {
	rows, total, err := query.Page[did](s.DB.WithContext(ctx).Model(&did{}), "number", limit, offset)
	if err != nil {
		return nil, 0, translate(err, 0)
	}
	return query.Map(rows, func(d *did) DID { return *d.public() }), total, nil
}

func (s *Store) get(ctx context.Context, id int64) (*did, error) {
	var row did
	if err := s.DB.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translate(err, id)
	}
	return &row, nil
}

func (s *Store) byNumber(ctx context.Context, number string) (*did, error) {
	var row did
	err := s.DB.WithContext(ctx).Where("number = ?", number).First(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	return &row, err
}

func (s *Store) insert(ctx context.Context, spec Spec) (*did, error) {
	t := query.Now()
	row := did{Number: spec.Number, TargetType: spec.TargetType, TargetID: spec.TargetID, Description: spec.Description, CreatedAt: t, UpdatedAt: t}
	if err := s.DB.WithContext(ctx).Create(&row).Error; err != nil {
		return nil, translate(err, 0)
	}
	return &row, nil
}

func (s *Store) update(ctx context.Context, row *did) error {
	row.UpdatedAt = query.Now()
	err := s.DB.WithContext(ctx).Model(row).Select("target_type", "target_id", "description", "updated_at").Updates(row).Error
	return translate(err, row.ID)
}

func (s *Store) delete(ctx context.Context, id int64) error {
	return translate(s.DB.WithContext(ctx).Delete(&did{}, id).Error, id)
}
