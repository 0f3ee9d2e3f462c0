package cdrs

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// MaxBatch is the most CDRs one request may post.
const MaxBatch = 1000

// Tolerance is how far duration and billsec may be from what the
// timestamps say: switches report whole seconds and truncate or round
// differently (a 47.6 s call is 47 on one, 48 on another).
const Tolerance = time.Second

// maxNumberLen bounds src and dst: numbers as dialled, with room for
// prefixes and SIP user parts, but not for junk.
const maxNumberLen = 64

// maxBatchErrors is how many field errors one answer lists.
const maxBatchErrors = 100

// Spec is one CDR as the switch posts it. Instants are RFC 3339 text,
// parsed by validation so that a bad one is reported by name.
type Spec struct {
	UUID        string  `json:"uuid"`
	Direction   string  `json:"direction"`
	Src         string  `json:"src"`
	Dst         string  `json:"dst"`
	StartAt     string  `json:"start_at"`
	AnswerAt    *string `json:"answer_at"` // null or absent: not answered
	EndAt       string  `json:"end_at"`
	Duration    *int    `json:"duration"`
	Billsec     int     `json:"billsec"`
	Disposition string  `json:"disposition"`
	ExtensionID *int64  `json:"extension_id"`
	QueueID     *int64  `json:"queue_id"`
}

// Result is the outcome of posting one CDR: the stored CDR, and whether
// this request stored it (false: it was already there, and is unchanged).
type Result struct {
	Created bool `json:"created"`
	CDR     CDR  `json:"cdr"`
}

// input is a validated Spec, rated before it is stored.
type input struct {
	UUID        string
	Direction   string
	Src         string
	Dst         string
	StartAt     time.Time
	AnswerAt    *time.Time
	EndAt       time.Time
	Duration    int
	Billsec     int
	Disposition string
	ExtensionID *int64
	QueueID     *int64
	rating
}

// Ingest stores one CDR, rated; posting a CDR whose uuid is stored returns
// the stored one unchanged.
func (s *Store) Ingest(ctx context.Context, spec Spec) (*Result, error) {
	// One CDR is often a switch's retry: ON CONFLICT at once (see store).
	all := columnsOf{allColumns, (*cdr).allFields}
	res, err := s.ingest(ctx, []Spec{spec}, func(int) string { return "" }, storing{inserted: all, existing: all})
	if err != nil {
		return nil, err
	}
	return &Result{Created: res[0].created, CDR: res[0].row.public()}, nil
}

// IngestBatch stores up to MaxBatch CDRs, rated, and returns one
// BatchResult per spec, in order. It is all or nothing: every CDR is
// validated first, and if any is invalid nothing is stored and the error
// names each bad field by its place in the batch (cdrs[3].billsec). CDRs
// already stored are left as they are and reported with their stored id
// and rating, so a batch can be retried safely.
func (s *Store) IngestBatch(ctx context.Context, specs []Spec) ([]BatchResult, error) {
	if err := CheckBatchSize(len(specs)); err != nil {
		return nil, err
	}
	res, err := s.ingest(ctx, specs, batchPath, storing{
		inserted:   columnsOf{keyColumns, (*cdr).keyFields},
		existing:   columnsOf{ratingColumns, (*cdr).ratingFields},
		optimistic: true,
	})
	if err != nil {
		return nil, err
	}
	out := make([]BatchResult, len(res))
	for i, r := range res {
		b := BatchResult{ID: r.row.ID, UUID: r.row.UUID, Created: r.created, RateID: r.row.RateID, UnratedReason: r.row.UnratedReason}
		cost := r.row.Cost
		if r.created {
			// Only the keys were read back: the rest is what was sent.
			b.RateID, b.UnratedReason = r.rating.RateID, r.rating.UnratedReason
			cost = decimal.NullDecimal{}
			if r.rating.Cost != nil {
				cost = decimal.NewNullDecimal(*r.rating.Cost)
			}
		}
		if cost.Valid {
			c := rates.NewMoney(cost.Decimal, rates.CostScale)
			b.Cost = &c
		}
		out[i] = b
	}
	return out, nil
}

// batchPath names the fields of the i-th CDR of a batch: cdrs[3].
func batchPath(i int) string { return "cdrs[" + strconv.Itoa(i) + "]." }

// CheckBatchSize refuses a batch of n CDRs unless 1 ≤ n ≤ MaxBatch; callers
// may check before decoding the CDRs themselves.
func CheckBatchSize(n int) error {
	switch {
	case n == 0:
		return controlplane.FieldError("cdrs", "must hold at least one CDR")
	case n > MaxBatch:
		return controlplane.FieldError("cdrs", fmt.Sprintf("must hold at most %d CDRs (it has %d); split the batch", MaxBatch, n))
	}
	return nil
}

// ingest validates, rates and stores specs as how says.
func (s *Store) ingest(ctx context.Context, specs []Spec, path func(int) string, how storing) ([]stored, error) {
	fields := controlplane.FieldErrors{}
	ins := make([]input, len(specs))
	seen := map[string]int{}
	for i := range specs {
		in, errs := specs[i].validate()
		if j, dup := seen[in.UUID]; dup && in.UUID != "" {
			errs.Add("uuid", "repeats "+path(j)+"uuid; a batch holds each call once")
		} else {
			seen[in.UUID] = i
		}
		addPrefixed(fields, errs, path(i))
		ins[i] = in
	}
	if err := s.checkRefs(ctx, ins, path, fields); err != nil {
		return nil, err
	}
	if len(fields) > 0 {
		return nil, invalid(fields, path(0) != "")
	}
	if err := s.rate(ctx, ins); err != nil {
		return nil, err
	}
	return s.store(ctx, ins, how)
}

// validate checks one CDR against docs/DOMAIN.md's rules.
func (spec *Spec) validate() (input, controlplane.FieldErrors) {
	f := controlplane.FieldErrors{}
	in := input{Direction: spec.Direction, Src: spec.Src, Dst: spec.Dst, Billsec: spec.Billsec,
		Disposition: spec.Disposition, ExtensionID: spec.ExtensionID, QueueID: spec.QueueID}
	var ok bool
	if in.UUID, ok = canonicalUUID(spec.UUID); !ok {
		f.Add("uuid", "must be a UUID such as 6f9619ff-8b86-d011-b42d-00c04fc964ff")
	}
	if !slices.Contains(Directions, spec.Direction) {
		f.Add("direction", "must be one of: "+strings.Join(Directions, ", "))
	}
	if !slices.Contains(Dispositions, spec.Disposition) {
		f.Add("disposition", "must be one of: "+strings.Join(Dispositions, ", "))
	}
	if spec.Dst == "" {
		f.Add("dst", "is required")
	}
	checkNumber(f, "src", spec.Src)
	checkNumber(f, "dst", spec.Dst)
	for _, ref := range [...]struct {
		name string
		id   *int64
	}{{"extension_id", spec.ExtensionID}, {"queue_id", spec.QueueID}} {
		if ref.id != nil && *ref.id < 1 {
			f.Add(ref.name, "must be a positive id")
		}
	}
	start, startOK := instant(f, "start_at", spec.StartAt)
	end, endOK := instant(f, "end_at", spec.EndAt)
	in.StartAt, in.EndAt = start, end
	answerOK := true
	if spec.AnswerAt != nil {
		var a time.Time
		a, answerOK = instant(f, "answer_at", *spec.AnswerAt)
		in.AnswerAt = &a
		if answerOK && startOK && a.Before(start) {
			f.Add("answer_at", "must not be before start_at")
		}
		if answerOK && endOK && end.Before(a) {
			f.Add("end_at", "must not be before answer_at")
		}
	}
	if startOK && endOK && end.Before(start) {
		f.Add("end_at", "must not be before start_at")
	}
	switch {
	case spec.Disposition == Answered && spec.AnswerAt == nil:
		f.Add("answer_at", "is required when disposition is ANSWERED")
	case spec.Disposition != Answered && spec.AnswerAt != nil && slices.Contains(Dispositions, spec.Disposition):
		f.Add("disposition", "must be ANSWERED when answer_at is set")
	}
	spec.checkSeconds(f, &in, startOK && endOK, answerOK)
	return in, f
}

// checkSeconds checks duration and billsec against the timestamps, within
// Tolerance: duration = end − start, billsec = end − answer (0 when not
// answered), 0 ≤ billsec ≤ duration. A comparison with a timestamp that
// did not parse is skipped: that field is reported already.
func (spec *Spec) checkSeconds(f controlplane.FieldErrors, in *input, timesOK, answerOK bool) {
	switch {
	case spec.Duration == nil:
		f.Add("duration", "is required")
		return
	case *spec.Duration < 0 || *spec.Duration > math.MaxInt32:
		f.Add("duration", fmt.Sprintf("must be between 0 and %d", math.MaxInt32))
		return
	}
	in.Duration = *spec.Duration
	if timesOK && !near(in.Duration, in.EndAt.Sub(in.StartAt)) {
		f.Add("duration", fmt.Sprintf("must be end_at − start_at in seconds (%s here, ±1 s)", in.EndAt.Sub(in.StartAt)))
	}
	switch {
	case spec.Billsec < 0 || spec.Billsec > in.Duration:
		f.Add("billsec", "must be between 0 and duration")
	case in.AnswerAt == nil && spec.Billsec != 0:
		f.Add("billsec", "must be 0 when the call was not answered (no answer_at)")
	case in.AnswerAt != nil && timesOK && answerOK && !near(spec.Billsec, in.EndAt.Sub(*in.AnswerAt)):
		f.Add("billsec", fmt.Sprintf("must be end_at − answer_at in seconds (%s here, ±1 s)", in.EndAt.Sub(*in.AnswerAt)))
	}
}

// checkNumber checks a number as dialled (or a filter on one): at most
// maxNumberLen bytes, no control character (PostgreSQL text cannot hold NUL).
func checkNumber(f controlplane.FieldErrors, name, v string) {
	if len(v) > maxNumberLen {
		f.Add(name, fmt.Sprintf("must be at most %d characters", maxNumberLen))
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		f.Add(name, "must not contain control characters")
	}
}

// near reports whether whole seconds n are within Tolerance of d.
func near(n int, d time.Duration) bool {
	diff := time.Duration(n)*time.Second - d
	return diff <= Tolerance && diff >= -Tolerance
}

// instant parses a required RFC 3339 instant at the database's precision.
func instant(f controlplane.FieldErrors, name, s string) (time.Time, bool) {
	if s == "" {
		f.Add(name, "is required")
		return time.Time{}, false
	}
	t, ok := parseInstant(s)
	if !ok {
		f.Add(name, "must be an RFC 3339 instant with an offset, e.g. 2025-11-03T14:05:09Z")
	}
	return t, ok
}

// canonicalUUID returns s in PostgreSQL's canonical form (lower-case,
// 8-4-4-4-12), or false when s is not a UUID in that layout.
func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'):
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// checkRefs adds an error for each extension_id or queue_id that is not
// one of this tenant's: one query per table for the whole batch. The
// foreign keys remain the backstop against a delete racing the insert.
func (s *Store) checkRefs(ctx context.Context, ins []input, path func(int) string, fields controlplane.FieldErrors) error {
	for _, ref := range []struct {
		table, field, reason string
		id                   func(*input) *int64
	}{
		{"extensions", "extension_id", "is not an extension of this tenant", func(in *input) *int64 { return in.ExtensionID }},
		{"queues", "queue_id", "is not a queue of this tenant", func(in *input) *int64 { return in.QueueID }},
	} {
		var ids []int64
		for i := range ins {
			if id := ref.id(&ins[i]); id != nil && *id > 0 {
				ids = append(ids, *id)
			}
		}
		if len(ids) == 0 {
			continue
		}
		var found []int64
		if err := s.DB.WithContext(ctx).Raw(`SELECT id FROM `+query.Table(s.DB, ref.table)+` WHERE id IN ?`, ids).Scan(&found).Error; err != nil {
			return translate(err)
		}
		for i := range ins {
			if id := ref.id(&ins[i]); id != nil && *id > 0 && !slices.Contains(found, *id) {
				fields.Add(path(i)+ref.field, ref.reason)
			}
		}
	}
	return nil
}

// addPrefixed copies errs into fields under prefix (cdrs[3].), up to
// maxBatchErrors entries.
func addPrefixed(fields, errs controlplane.FieldErrors, prefix string) {
	for k, v := range errs {
		if len(fields) < maxBatchErrors {
			fields.Add(prefix+k, v)
		}
	}
}

// invalid is the error of a rejected post: nothing was stored.
func invalid(fields controlplane.FieldErrors, batch bool) error {
	if !batch {
		return fields.Err()
	}
	return &controlplane.Error{Code: controlplane.Invalid, Message: "the batch has invalid fields; none of its CDRs was stored", Fields: fields}
}

// rating is what rating sets on a CDR; cost is nil for an unrated call.
type rating struct {
	RateID        *int64           `json:"rate_id"`
	Cost          *decimal.Decimal `json:"cost"`
	UnratedReason *string          `json:"unrated_reason"`
}
