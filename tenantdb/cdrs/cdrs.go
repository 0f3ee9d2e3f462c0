// Package cdrs is a tenant's call detail records: ingested from the switch
// (idempotently, by call UUID), rated at ingest against the tenant's rates,
// listed newest first with keyset pagination, re-rated after a rate change,
// and reported per local day or hour in the tenant's timezone.
package cdrs

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// The enumerations of a CDR.
var (
	Directions   = []string{"inbound", "outbound", "internal"}
	Dispositions = []string{"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"}
)

// Answered is the disposition of a call that was answered.
const Answered = "ANSWERED"

// CDR is what the API returns. Instants are UTC.
type CDR struct {
	ID          int64      `json:"id"`
	UUID        string     `json:"uuid"`
	Direction   string     `json:"direction"`
	Src         string     `json:"src"`
	Dst         string     `json:"dst"`
	StartAt     time.Time  `json:"start_at"`
	AnswerAt    *time.Time `json:"answer_at"`
	EndAt       time.Time  `json:"end_at"`
	Duration    int        `json:"duration"`
	Billsec     int        `json:"billsec"`
	Disposition string     `json:"disposition"`
	ExtensionID *int64     `json:"extension_id"`
	QueueID     *int64     `json:"queue_id"`
	// Set by rating: the rate used and the cost (a decimal string with 4
	// places), or no cost and the reason (see the Unrated reasons).
	RateID        *int64       `json:"rate_id"`
	Cost          *rates.Money `json:"cost"`
	UnratedReason *string      `json:"unrated_reason"`
	CreatedAt     time.Time    `json:"created_at"`
}

// cdr is the table row; its name goes through the handle's naming strategy
// (schema-qualified in schema mode).
type cdr struct {
	ID            int64
	UUID          string
	Direction     string
	Src           string
	Dst           string
	StartAt       time.Time
	AnswerAt      *time.Time
	EndAt         time.Time
	Duration      int
	Billsec       int
	Disposition   string
	ExtensionID   *int64
	QueueID       *int64
	RateID        *int64
	Cost          decimal.NullDecimal
	UnratedReason *string
	CreatedAt     time.Time
}

// TableName qualifies the table through the namer (see cdr).
func (cdr) TableName(n schema.Namer) string { return n.TableName("Cdr") }

func (r *cdr) public() CDR {
	out := CDR{
		ID: r.ID, UUID: r.UUID, Direction: r.Direction, Src: r.Src, Dst: r.Dst,
		StartAt: r.StartAt.UTC(), EndAt: r.EndAt.UTC(), Duration: r.Duration, Billsec: r.Billsec,
		Disposition: r.Disposition, ExtensionID: r.ExtensionID, QueueID: r.QueueID,
		RateID: r.RateID, UnratedReason: r.UnratedReason, CreatedAt: r.CreatedAt.UTC(),
	}
	if r.AnswerAt != nil {
		a := r.AnswerAt.UTC()
		out.AnswerAt = &a
	}
	if r.Cost.Valid {
		c := rates.NewMoney(r.Cost.Decimal, rates.CostScale)
		out.Cost = &c
	}
	return out
}

// Store is one tenant's CDRs. Tenant is the catalog snapshot of the
// request: its timezone defines local dates, days and hours.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"cdrs_direction_valid":         {Field: "direction", Reason: "must be one of: " + strings.Join(Directions, ", ")},
	"cdrs_disposition_valid":       {Field: "disposition", Reason: "must be one of: " + strings.Join(Dispositions, ", ")},
	"cdrs_answer_at_after_start":   {Field: "answer_at", Reason: "must not be before start_at"},
	"cdrs_end_at_after_start":      {Field: "end_at", Reason: "must not be before start_at"},
	"cdrs_end_at_after_answer":     {Field: "end_at", Reason: "must not be before answer_at"},
	"cdrs_duration_nonnegative":    {Field: "duration", Reason: "must be at least 0"},
	"cdrs_billsec_range":           {Field: "billsec", Reason: "must be between 0 and duration"},
	"cdrs_billsec_unanswered_zero": {Field: "billsec", Reason: "must be 0 when the call was not answered"},
	"cdrs_extension_id_fkey":       {Field: "extension_id", Reason: "is not an extension of this tenant"},
	"cdrs_queue_id_fkey":           {Field: "queue_id", Reason: "is not a queue of this tenant"},
})

func translate(err error) error { return sqlerr.TranslateTenant(err, constraints) }

// Get returns one CDR by its id or its call UUID.
func (s *Store) Get(ctx context.Context, key string) (*CDR, error) {
	q := s.DB.WithContext(ctx)
	if id, err := strconv.ParseInt(key, 10, 64); err == nil && id > 0 {
		q = q.Where("id = ?", id)
	} else if u, ok := canonicalUUID(key); ok {
		q = q.Where("uuid = ?", u)
	} else {
		return nil, &controlplane.Error{Code: controlplane.BadRequest, Message: "id must be a positive integer or a call UUID", Fields: map[string]string{"id": "must be a positive integer or a call UUID"}}
	}
	var row cdr
	if err := q.Take(&row).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, controlplane.Errorf(controlplane.NotFound, "CDR %s not found", key)
		}
		return nil, translate(err)
	}
	out := row.public()
	return &out, nil
}

// Query selects and pages CDRs. Every field is optional; strings are as
// the client sent them and List validates them, naming the parameter.
type Query struct {
	// From and To bound start_at: an RFC 3339 instant, half-open [from,
	// to), or a local date YYYY-MM-DD in the tenant's timezone, from its
	// first instant (from) or up to the next local midnight (to: the date
	// is included).
	From, To    string
	Direction   string
	Disposition string
	ExtensionID int64 // 0: any
	QueueID     int64 // 0: any
	// Src and Dst match numbers starting with them, as dialled.
	Src, Dst string
	// Cursor continues after the last CDR of a previous page (next_cursor).
	Cursor string
	Limit  int
}

// Page is one page of CDRs, newest first. NextCursor is null on the last
// page.
type Page struct {
	Data       []CDR   `json:"data"`
	NextCursor *string `json:"next_cursor"`
	Limit      int     `json:"limit"`
}

// List returns CDRs matching q, newest first (start_at, then id,
// descending). Pages are keyset-paginated: a cursor names the last CDR
// shown, and the next page is what sorts after it, so CDRs arriving between
// two requests never shift, repeat or skip rows of the pages still to come.
func (s *Store) List(ctx context.Context, q Query) (*Page, error) {
	if q.Limit < 1 || q.Limit > controlplane.MaxPageSize {
		q.Limit = controlplane.DefaultPageSize
	}
	fields := controlplane.FieldErrors{}
	from := parseBound(fields, "from", q.From)
	to := parseBound(fields, "to", q.To)
	db := s.DB.WithContext(ctx).Model(&cdr{})
	for _, f := range []struct {
		name, value string
		enum        []string
	}{{"direction", q.Direction, Directions}, {"disposition", q.Disposition, Dispositions}} {
		if f.value == "" {
			continue
		}
		if !slices.Contains(f.enum, f.value) {
			fields.Add(f.name, "must be one of: "+strings.Join(f.enum, ", "))
		}
		db = db.Where(f.name+" = ?", f.value)
	}
	for _, f := range []struct{ name, value string }{{"src", q.Src}, {"dst", q.Dst}} {
		checkNumber(fields, f.name, f.value)
		if f.value != "" {
			db = db.Where(f.name+` LIKE ?`, likePrefix(f.value))
		}
	}
	if q.Cursor != "" {
		c, ok := parseCursor(q.Cursor)
		if !ok {
			fields.Add("cursor", "is not a cursor this API returned (use next_cursor as is)")
		}
		db = db.Where("(start_at, id) < (?, ?)", c.startAt, c.id)
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	if q.ExtensionID != 0 {
		db = db.Where("extension_id = ?", q.ExtensionID)
	}
	if q.QueueID != 0 {
		db = db.Where("queue_id = ?", q.QueueID)
	}
	tz := s.Tenant.Timezone
	if from != nil {
		expr, args := from.start(tz)
		db = db.Where("start_at >= "+expr, args...)
	}
	if to != nil {
		expr, args := to.end(tz)
		db = db.Where("start_at < "+expr, args...)
	}
	// One more row than asked says whether a next page exists.
	var rows []cdr
	if err := db.Order("start_at DESC, id DESC").Limit(q.Limit + 1).Find(&rows).Error; err != nil {
		return nil, translate(err)
	}
	page := &Page{Data: make([]CDR, 0, min(len(rows), q.Limit)), Limit: q.Limit}
	for i := range rows[:min(len(rows), q.Limit)] {
		page.Data = append(page.Data, rows[i].public())
	}
	if len(rows) > q.Limit {
		last := rows[q.Limit-1]
		next := cursor{startAt: last.StartAt, id: last.ID}.String()
		page.NextCursor = &next
	}
	return page, nil
}

// cursor is the position after a CDR in the listing order. It is opaque to
// clients (base64 of the start instant at full precision and the id), so
// its format may change.
type cursor struct {
	startAt time.Time
	id      int64
}

func (c cursor) String() string {
	raw := c.startAt.UTC().Format(time.RFC3339Nano) + "/" + strconv.FormatInt(c.id, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func parseCursor(s string) (cursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, false
	}
	at, id, ok := strings.Cut(string(raw), "/")
	if !ok {
		return cursor{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	n, nerr := strconv.ParseInt(id, 10, 64)
	if err != nil || nerr != nil || n < 1 {
		return cursor{}, false
	}
	return cursor{startAt: t, id: n}, true
}

// likePrefix is the LIKE pattern of strings starting with s, with LIKE's
// own wildcards in s escaped.
func likePrefix(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
}
