// Package queues is a tenant's call queues (FreeSWITCH mod_callcenter
// style) and their members: agent pools that inbound calls are distributed
// over.
package queues

import (
	"bytes"
	"context"
	"encoding/json"
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

// Strategies are mod_callcenter's names (docs/DOMAIN.md). An unknown
// strategy is an error, never a silent default. This list is the rule
// (the queue_strategy tag); TestConstraintContracts checks that the SQL
// CHECK queues_strategy_valid allows exactly these.
var Strategies = []string{
	"ring-all", "longest-idle-agent", "round-robin", "top-down", "agent-with-least-talk-time",
	"agent-with-fewest-calls", "sequentially-by-agent-order", "random", "ring-progressively",
}

func init() { controlplane.RegisterEnum("queue_strategy", Strategies) }

// DefaultStrategy is used when a queue is created without one.
const DefaultStrategy = "longest-idle-agent"

// Queue is what the API returns.
type Queue struct {
	ID             int64     `json:"id"`
	Name           string    `json:"name"`
	Extension      *string   `json:"extension"`
	Strategy       string    `json:"strategy"`
	MaxWaitSeconds int       `json:"max_wait_seconds"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Spec is a create (POST) or replace (PUT); start from NewSpec.
type Spec struct {
	Name           string  `json:"name" validate:"required,max=200"`
	Extension      *string `json:"extension" validate:"omitempty,ext_number"`
	Strategy       string  `json:"strategy" validate:"queue_strategy"`
	MaxWaitSeconds int     `json:"max_wait_seconds" validate:"min=0,max=86400"`
}

// NewSpec returns a queue's defaults.
func NewSpec() Spec { return Spec{Strategy: DefaultStrategy} }

// Patch is a partial update; an empty extension clears the dial number.
type Patch struct {
	Name           *string `json:"name"`
	Extension      *string `json:"extension"`
	Strategy       *string `json:"strategy"`
	MaxWaitSeconds *int    `json:"max_wait_seconds"`
}

// Member is one agent (extension) of a queue.
type Member struct {
	ExtensionID int64  `json:"extension_id"`
	Number      string `json:"number"` // the extension's number, for reading
	Level       int    `json:"level"`
	Position    int    `json:"position"`
}

// MemberSpec adds an extension to a queue.
type MemberSpec struct {
	ExtensionID int64 `json:"extension_id" validate:"required,min=1"`
	Level       int   `json:"level" validate:"min=1,max=1000"`
	Position    int   `json:"position" validate:"min=1,max=1000"`
}

// NewMemberSpec returns a member's defaults.
func NewMemberSpec() MemberSpec { return MemberSpec{Level: 1, Position: 1} }

// UnmarshalJSON decodes over the defaults, so an entry of a member list that
// leaves level or position out gets 1, while an explicit 0 is still refused.
// Unknown fields are refused as everywhere else.
func (m *MemberSpec) UnmarshalJSON(b []byte) error {
	type plain MemberSpec
	p := plain(NewMemberSpec())
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*m = MemberSpec(p)
	return nil
}

type queue struct {
	ID             int64
	Name           string
	Extension      *string
	Strategy       string
	MaxWaitSeconds int
	CreatedAt      time.Time
	UpdatedAt      time.Time `gorm:"autoUpdateTime:false"` // set at database precision by the store
}

// TableName is the bare table name; the router qualifies it with a schema
// tenant's schema per statement (tenantdb.qualifyTables).
func (queue) TableName(n schema.Namer) string { return n.TableName("Queue") }

type queueMember struct {
	ID          int64
	QueueID     int64
	ExtensionID int64
	Level       int
	Position    int
	CreatedAt   time.Time
	UpdatedAt   time.Time `gorm:"autoUpdateTime:false"` // set at database precision by the store
}

// TableName is the bare table name; the router qualifies it with a schema
// tenant's schema per statement (tenantdb.qualifyTables).
func (queueMember) TableName(n schema.Namer) string { return n.TableName("QueueMember") }

func (q *queue) public() Queue {
	return Queue{ID: q.ID, Name: q.Name, Extension: q.Extension, Strategy: q.Strategy, MaxWaitSeconds: q.MaxWaitSeconds, CreatedAt: q.CreatedAt, UpdatedAt: q.UpdatedAt}
}

// Store is one tenant's queues.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"queues_name_key":                         {Field: "name", Reason: "is already used by another queue"},
	"queues_name_not_empty":                   {Field: "name", Reason: "is required"},
	"queues_extension_key":                    {Field: "extension", Reason: "is already the dial number of another queue"},
	"queues_extension_format":                 {Field: "extension", Reason: "must be 2 to 7 digits"},
	"queues_strategy_valid":                   {Field: "strategy", Reason: "is not a known strategy"},
	"queues_max_wait_seconds_range":           {Field: "max_wait_seconds", Reason: "must be between 0 and 86400"},
	"queue_members_extension_id_fkey":         {Field: "extension_id", Reason: "is not an extension of this tenant"},
	"queue_members_queue_id_extension_id_key": {Field: "extension_id", Reason: "is already a member of this queue"},
	"queue_members_level_positive":            {Field: "level", Reason: "must be at least 1"},
	"queue_members_position_positive":         {Field: "position", Reason: "must be at least 1"},
	"dids_target_queue_fkey":                  {Field: "id", Reason: "is the target of a DID number; re-point or delete the DID first"},
})

func translate(err error, what string, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "%s %d not found", what, id)
	}
	return sqlerr.TranslateTenant(err, constraints)
}

// Create adds a queue. Its dial number must not be an extension's number:
// checked under the tenant's number-space lock, which extension writes take
// too, so the two cannot race into a clash.
func (s *Store) Create(ctx context.Context, spec Spec) (*Queue, error) {
	if err := controlplane.ValidateStruct(&spec); err != nil {
		return nil, err
	}
	t := query.Now()
	row := queue{Name: spec.Name, Extension: spec.Extension, Strategy: spec.Strategy, MaxWaitSeconds: spec.MaxWaitSeconds, CreatedAt: t, UpdatedAt: t}
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := checkExtensionClash(tx, s.Tenant.ID, row.Extension); err != nil {
			return err
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		return nil, translate(err, "queue", 0)
	}
	out := row.public()
	return &out, nil
}

// Get returns one queue.
func (s *Store) Get(ctx context.Context, id int64) (*Queue, error) {
	var row queue
	if err := s.DB.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translate(err, "queue", id)
	}
	out := row.public()
	return &out, nil
}

// List returns a page of queues ordered by name, and the total.
func (s *Store) List(ctx context.Context, limit, offset int) ([]Queue, int, error) {
	rows, total, err := query.Page[queue](s.DB.WithContext(ctx).Model(&queue{}), "name", limit, offset)
	if err != nil {
		return nil, 0, translate(err, "queue", 0)
	}
	return query.Map(rows, (*queue).public), total, nil
}

// Replace sets every field of queue id (PUT); left-out fields take defaults.
func (s *Store) Replace(ctx context.Context, id int64, spec Spec) (*Queue, error) {
	return s.update(ctx, id, func(Spec) Spec { return spec })
}

// Patch changes the fields present in p (PATCH).
func (s *Store) Patch(ctx context.Context, id int64, p Patch) (*Queue, error) {
	return s.update(ctx, id, p.Apply)
}

func (s *Store) update(ctx context.Context, id int64, change func(Spec) Spec) (*Queue, error) {
	var row queue
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&row, id).Error; err != nil {
			return err
		}
		spec := change(Spec{Name: row.Name, Extension: row.Extension, Strategy: row.Strategy, MaxWaitSeconds: row.MaxWaitSeconds})
		if err := controlplane.ValidateStruct(&spec); err != nil {
			return err
		}
		if spec.Extension != nil && (row.Extension == nil || *row.Extension != *spec.Extension) {
			if err := checkExtensionClash(tx, s.Tenant.ID, spec.Extension); err != nil {
				return err
			}
		}
		row.Name, row.Extension, row.Strategy, row.MaxWaitSeconds, row.UpdatedAt = spec.Name, spec.Extension, spec.Strategy, spec.MaxWaitSeconds, query.Now()
		return tx.Select("*").Omit("id", "created_at").Updates(&row).Error
	})
	if err != nil {
		return nil, translate(err, "queue", id)
	}
	out := row.public()
	return &out, nil
}

// Delete removes a queue and its memberships; a queue a DID routes to is
// kept (409) until the DID is re-pointed.
func (s *Store) Delete(ctx context.Context, id int64) error {
	res := s.DB.WithContext(ctx).Delete(&queue{}, id)
	return query.Deleted(res, func(err error) error { return sqlerr.Referenced(translate(err, "queue", id)) }, fmt.Sprintf("queue %d", id))
}

// checkExtensionClash refuses a queue dial number that is an extension's
// number, under the tenant's number-space lock (taken here, in tx).
func checkExtensionClash(tx *gorm.DB, tenantID int64, number *string) error {
	if number == nil {
		return nil
	}
	if err := query.LockNumberSpace(tx, tenantID); err != nil {
		return err
	}
	var n int64
	if err := tx.Raw(`SELECT count(*) FROM `+query.Table(tx, "extensions")+` WHERE number = ?`, *number).Scan(&n).Error; err != nil {
		return err
	}
	if n > 0 {
		return &controlplane.Error{Code: controlplane.Conflict, Message: "extension " + *number + " is an extension's number",
			Fields: map[string]string{"extension": "is already an extension's number"}}
	}
	return nil
}

// Apply is cur with the fields p sends; an empty extension clears the
// queue's dial number.
func (p Patch) Apply(cur Spec) Spec {
	controlplane.Set(&cur.Name, p.Name)
	if p.Extension != nil {
		cur.Extension = p.Extension
		if *p.Extension == "" {
			cur.Extension = nil
		}
	}
	controlplane.Set(&cur.Strategy, p.Strategy)
	controlplane.Set(&cur.MaxWaitSeconds, p.MaxWaitSeconds)
	return cur
}
