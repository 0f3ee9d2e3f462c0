// Package rates is a tenant's billing rates: a price per destination prefix
// over a half-open period [effective_from, effective_to), and the rating
// rules that turn a call's billed seconds into a cost. Money is decimal end
// to end (shopspring/decimal, numeric), never a float.
package rates

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// Rate is what the API returns.
type Rate struct {
	ID               int64      `json:"id"`
	Prefix           string     `json:"prefix"`
	RatePerMinute    Money      `json:"rate_per_minute"`
	ConnectFee       Money      `json:"connect_fee"`
	MinSeconds       int        `json:"min_seconds"`
	IncrementSeconds int        `json:"increment_seconds"`
	EffectiveFrom    time.Time  `json:"effective_from"`
	EffectiveTo      *time.Time `json:"effective_to"` // nil: open-ended
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// Spec is a create (POST) or full replace (PUT). Left-out optional fields
// take their defaults: connect_fee 0, effective_to open-ended. Instants are
// RFC 3339 text, parsed by validation so a bad one is reported by name.
type Spec struct {
	Prefix        string `json:"prefix"`
	RatePerMinute *Money `json:"rate_per_minute" validate:"required"`
	ConnectFee    *Money `json:"connect_fee"`
	// Billing blocks have no default on purpose: granularity is always
	// stated. A block longer than a day is a typo, not a tariff.
	MinSeconds       *int    `json:"min_seconds" validate:"required,min=1,max=86400"`
	IncrementSeconds *int    `json:"increment_seconds" validate:"required,min=1,max=86400"`
	EffectiveFrom    string  `json:"effective_from" validate:"required"`
	EffectiveTo      *string `json:"effective_to"`
}

// Patch is a partial update; nil fields stay as they are. effective_to is
// raw JSON because null means something here (open-ended) that absence
// does not (unchanged).
type Patch struct {
	Prefix           *string         `json:"prefix"`
	RatePerMinute    *Money          `json:"rate_per_minute"`
	ConnectFee       *Money          `json:"connect_fee"`
	MinSeconds       *int            `json:"min_seconds"`
	IncrementSeconds *int            `json:"increment_seconds"`
	EffectiveFrom    *string         `json:"effective_from"`
	EffectiveTo      json.RawMessage `json:"effective_to"`
}

// input is a validated Spec.
type input struct {
	prefix    string
	rate, fee decimal.Decimal
	min, inc  int
	from      time.Time
	to        *time.Time
}

var prefixPattern = regexp.MustCompile(`^[0-9]{1,15}$`)

const prefixReason = "must be 1 to 15 digits (an E.164 number without +), e.g. 4420"

// validate checks spec against the rules of docs/DOMAIN.md and returns it
// parsed, or an Invalid error naming every bad field.
func (spec *Spec) validate() (input, error) {
	fields := controlplane.FieldErrors{}
	if err := controlplane.ValidateStruct(spec); err != nil {
		if controlplane.ErrorCode(err) != controlplane.Invalid {
			return input{}, err
		}
		addAll(fields, err)
	}
	in := input{prefix: spec.Prefix}
	if !prefixPattern.MatchString(spec.Prefix) {
		fields.Add("prefix", prefixReason)
	}
	if spec.RatePerMinute != nil {
		spec.RatePerMinute.check(fields, "rate_per_minute", RateScale)
		in.rate = spec.RatePerMinute.Decimal
	}
	if spec.ConnectFee != nil {
		spec.ConnectFee.check(fields, "connect_fee", RateScale)
		in.fee = spec.ConnectFee.Decimal
	}
	if spec.MinSeconds != nil && spec.IncrementSeconds != nil {
		in.min, in.inc = *spec.MinSeconds, *spec.IncrementSeconds
	}
	if spec.EffectiveFrom != "" {
		in.from = parseInstant(fields, "effective_from", spec.EffectiveFrom)
	}
	if spec.EffectiveTo != nil && *spec.EffectiveTo != "" {
		to := parseInstant(fields, "effective_to", *spec.EffectiveTo)
		in.to = &to
		if _, bad := fields["effective_from"]; !bad && !to.After(in.from) {
			fields.Add("effective_to", "must be after effective_from: a period is [effective_from, effective_to)")
		}
	}
	return in, fields.Err()
}

// parseInstant reads an RFC 3339 instant at the database's precision. Its
// UTC year must be 1 to 9999: PostgreSQL has no year 0 and JSON no year
// 10000, so anything else would fail later as an internal error.
func parseInstant(fields controlplane.FieldErrors, name, s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UTC().Year() < 1 || t.UTC().Year() > 9999 {
		fields.Add(name, "must be an RFC 3339 instant with an offset, e.g. 2025-01-01T00:00:00Z")
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// addAll copies the fields of an Invalid error into fields.
func addAll(fields controlplane.FieldErrors, err error) {
	var de *controlplane.Error
	if errors.As(err, &de) {
		for k, v := range de.Fields {
			fields.Add(k, v)
		}
	}
}

// rate is the table row (its table schema-qualified in schema mode by the
// router's handle).
type rate struct {
	ID               int64
	Prefix           string
	RatePerMinute    decimal.Decimal
	ConnectFee       decimal.Decimal
	MinSeconds       int
	IncrementSeconds int
	EffectiveFrom    time.Time
	EffectiveTo      *time.Time
	CreatedAt        time.Time
	// Set by the store at the database's precision (µs): gorm's own
	// update time has nanoseconds, which PostgreSQL would round, and the
	// answer to a PATCH would differ from the next GET.
	UpdatedAt time.Time `gorm:"autoUpdateTime:false"`
}

// TableName is the bare table name; the router qualifies it with a schema
// tenant's schema per statement (tenantdb.qualifyTables).
func (rate) TableName(n schema.Namer) string { return n.TableName("Rate") }

func (r *rate) public() Rate {
	out := Rate{
		ID: r.ID, Prefix: r.Prefix,
		RatePerMinute: NewMoney(r.RatePerMinute, RateScale), ConnectFee: NewMoney(r.ConnectFee, RateScale),
		MinSeconds: r.MinSeconds, IncrementSeconds: r.IncrementSeconds,
		EffectiveFrom: r.EffectiveFrom.UTC(), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.EffectiveTo != nil {
		to := r.EffectiveTo.UTC()
		out.EffectiveTo = &to
	}
	return out
}

func (r *rate) set(in input) {
	r.Prefix, r.RatePerMinute, r.ConnectFee = in.prefix, in.rate, in.fee
	r.MinSeconds, r.IncrementSeconds = in.min, in.inc
	r.EffectiveFrom, r.EffectiveTo = in.from, in.to
}

func (r *rate) spec() Spec {
	rpm, fee := Money{Decimal: r.RatePerMinute}, Money{Decimal: r.ConnectFee}
	min, inc := r.MinSeconds, r.IncrementSeconds
	s := Spec{Prefix: r.Prefix, RatePerMinute: &rpm, ConnectFee: &fee, MinSeconds: &min, IncrementSeconds: &inc,
		EffectiveFrom: r.EffectiveFrom.UTC().Format(time.RFC3339Nano)}
	if r.EffectiveTo != nil {
		to := r.EffectiveTo.UTC().Format(time.RFC3339Nano)
		s.EffectiveTo = &to
	}
	return s
}

// Store is one tenant's rates.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"rates_prefix_format":               {Field: "prefix", Reason: prefixReason},
	"rates_rate_per_minute_nonnegative": {Field: "rate_per_minute", Reason: "must be at least 0"},
	"rates_connect_fee_nonnegative":     {Field: "connect_fee", Reason: "must be at least 0"},
	"rates_min_seconds_positive":        {Field: "min_seconds", Reason: "must be at least 1"},
	"rates_increment_seconds_positive":  {Field: "increment_seconds", Reason: "must be at least 1"},
	"rates_effective_to_after_from":     {Field: "effective_to", Reason: "must be after effective_from"},
	"rates_prefix_effective_from_key":   {Field: "effective_from", Reason: "another rate of this prefix starts at the same instant"},
})

func translate(err error, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "rate %d not found", id)
	}
	return sqlerr.TranslateTenant(err, constraints)
}

// Create adds a rate. Its period must not overlap another of its prefix:
// the check and the insert run under the prefix's lock (see lockPrefixes),
// so two concurrent creates of overlapping periods give exactly one success.
func (s *Store) Create(ctx context.Context, spec Spec) (*Rate, error) {
	in, err := spec.validate()
	if err != nil {
		return nil, err
	}
	now := query.Now()
	row := rate{CreatedAt: now, UpdatedAt: now}
	row.set(in)
	err = query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := lockPrefixes(tx, in.prefix); err != nil {
			return err
		}
		if err := checkOverlap(tx, in, 0); err != nil {
			return err
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		return nil, translate(err, 0)
	}
	out := row.public()
	return &out, nil
}

// Get returns one rate.
func (s *Store) Get(ctx context.Context, id int64) (*Rate, error) {
	var row rate
	if err := s.DB.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translate(err, id)
	}
	out := row.public()
	return &out, nil
}

// List returns a page of rates whose prefix starts with prefix (all when
// empty), ordered by prefix then effective_from, and the total.
func (s *Store) List(ctx context.Context, prefix string, limit, offset int) ([]Rate, int, error) {
	if prefix != "" && !prefixPattern.MatchString(prefix) {
		return nil, 0, controlplane.FieldError("prefix", prefixReason)
	}
	q := s.DB.WithContext(ctx).Model(&rate{})
	if prefix != "" {
		// Digits only (checked above): no LIKE wildcard to escape.
		q = q.Where("prefix LIKE ?", prefix+"%")
	}
	rows, total, err := query.Page[rate](q, "prefix, effective_from", limit, offset)
	if err != nil {
		return nil, 0, translate(err, 0)
	}
	return query.Map(rows, (*rate).public), total, nil
}

// Replace sets every field of rate id (PUT); left-out optional fields take
// their defaults. The new period must not overlap another of its prefix.
func (s *Store) Replace(ctx context.Context, id int64, spec Spec) (*Rate, error) {
	return s.update(ctx, id, func(Spec) Spec { return spec })
}

// Patch changes the fields present in p (PATCH); "effective_to": null
// makes the rate open-ended.
func (s *Store) Patch(ctx context.Context, id int64, p Patch) (*Rate, error) {
	to, toSet, err := p.effectiveTo()
	if err != nil {
		return nil, err
	}
	return s.update(ctx, id, func(cur Spec) Spec {
		if p.Prefix != nil {
			cur.Prefix = *p.Prefix
		}
		if p.RatePerMinute != nil {
			cur.RatePerMinute = p.RatePerMinute
		}
		if p.ConnectFee != nil {
			cur.ConnectFee = p.ConnectFee
		}
		if p.MinSeconds != nil {
			cur.MinSeconds = p.MinSeconds
		}
		if p.IncrementSeconds != nil {
			cur.IncrementSeconds = p.IncrementSeconds
		}
		if p.EffectiveFrom != nil {
			cur.EffectiveFrom = *p.EffectiveFrom
		}
		if toSet {
			cur.EffectiveTo = to
		}
		return cur
	})
}

// effectiveTo reads the tri-state effective_to of a patch: absent
// (unchanged), null (open-ended) or an instant.
func (p Patch) effectiveTo() (to *string, set bool, err error) {
	raw := bytes.TrimSpace(p.EffectiveTo)
	switch {
	case len(raw) == 0:
		return nil, false, nil
	case bytes.Equal(raw, []byte("null")):
		return nil, true, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, false, controlplane.FieldError("effective_to", "must be an RFC 3339 instant or null")
	}
	return &s, true, nil
}

func (s *Store) update(ctx context.Context, id int64, change func(Spec) Spec) (*Rate, error) {
	var row rate
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&row, id).Error; err != nil {
			return err
		}
		spec := change(row.spec())
		in, err := spec.validate()
		if err != nil {
			return err
		}
		// Both the old and the new prefix: a rate moving between prefixes
		// must not slip past a concurrent writer of either.
		if err := lockPrefixes(tx, row.Prefix, in.prefix); err != nil {
			return err
		}
		if err := checkOverlap(tx, in, id); err != nil {
			return err
		}
		row.set(in)
		row.UpdatedAt = query.Now()
		return tx.Select("*").Omit("id", "created_at").Updates(&row).Error
	})
	if err != nil {
		return nil, translate(err, id)
	}
	out := row.public()
	return &out, nil
}

// Delete removes a rate. CDRs rated with it keep their cost; their rate_id
// is cleared (ON DELETE SET NULL).
func (s *Store) Delete(ctx context.Context, id int64) error {
	res := s.DB.WithContext(ctx).Delete(&rate{}, id)
	return query.Deleted(res, func(err error) error { return translate(err, id) }, fmt.Sprintf("rate %d", id))
}
