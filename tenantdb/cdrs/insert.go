package cdrs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// BatchResult is the outcome of one CDR of a batch: its id and whether this
// request stored it, and its rating. For a CDR that was stored before
// (Created false) these are the stored CDR's, unchanged by the re-post.
type BatchResult struct {
	ID            int64        `json:"id"`
	UUID          string       `json:"uuid"`
	Created       bool         `json:"created"`
	RateID        *int64       `json:"rate_id"`
	Cost          *rates.Money `json:"cost"`
	UnratedReason *string      `json:"unrated_reason"`
}

// Columns read back after an insert. A batch needs only the keys of the
// rows it inserted (the rest is what it sent) and the rating of those it
// found stored; a single post answers with the whole stored CDR.
const (
	keyColumns    = "id, uuid"
	ratingColumns = "id, uuid, rate_id, cost, unrated_reason"
	allColumns    = "id, uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec, disposition, extension_id, queue_id, rate_id, cost, unrated_reason, created_at"
)

func (r *cdr) keyFields() []any { return []any{&r.ID, &r.UUID} }
func (r *cdr) ratingFields() []any {
	return []any{&r.ID, &r.UUID, &r.RateID, &r.Cost, &r.UnratedReason}
}
func (r *cdr) allFields() []any {
	return []any{&r.ID, &r.UUID, &r.Direction, &r.Src, &r.Dst, &r.StartAt, &r.AnswerAt, &r.EndAt, &r.Duration, &r.Billsec,
		&r.Disposition, &r.ExtensionID, &r.QueueID, &r.RateID, &r.Cost, &r.UnratedReason, &r.CreatedAt}
}

// stored is one input after store: the row as read back (the columns asked
// for), whether this call inserted it and, if it did, the rating it was
// inserted with.
type stored struct {
	row     *cdr
	created bool
	rating  rating
}

// columnsOf is a set of columns to read back and the fields they scan into.
type columnsOf struct {
	list   string
	fields func(*cdr) []any
}

// storing says how store writes and what it reads back: inserted rows come
// back with the columns of inserted, those stored before with the columns
// of existing.
type storing struct {
	inserted, existing columnsOf
	// optimistic tries a plain INSERT first (see store).
	optimistic bool
}

// store inserts the rated CDRs in one statement, skipping those whose uuid
// is already stored, then reads the skipped ones in one query (usually
// none). The rows travel as one typed array per column, unnested by
// PostgreSQL: one round trip and no document to build or parse.
func (s *Store) store(ctx context.Context, ins []input, how storing) ([]stored, error) {
	inserted, existing := how.inserted, how.existing
	n := len(ins)
	var (
		uuids, directions, srcs, dsts, dispositions = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		starts, ends                                = make([]time.Time, n), make([]time.Time, n)
		answers                                     = make([]*time.Time, n)
		durations, billsecs                         = make([]int32, n), make([]int32, n)
		extensions, queues, rateIDs                 = make([]*int64, n), make([]*int64, n), make([]*int64, n)
		costs, reasons                              = make([]*string, n), make([]*string, n)
	)
	for i := range ins {
		in := &ins[i]
		uuids[i], directions[i], srcs[i], dsts[i], dispositions[i] = in.UUID, in.Direction, in.Src, in.Dst, in.Disposition
		starts[i], answers[i], ends[i] = in.StartAt, in.AnswerAt, in.EndAt
		// validate bounds both to 0..MaxInt32 (billsec ≤ duration).
		durations[i], billsecs[i] = int32(in.Duration), int32(in.Billsec)
		extensions[i], queues[i], rateIDs[i], reasons[i] = in.ExtensionID, in.QueueID, in.RateID, in.UnratedReason
		if in.Cost != nil {
			// Exact: a cost has 4 places and fits numeric(15,4) (see price).
			c := in.Cost.StringFixed(rates.CostScale)
			costs[i] = &c
		}
	}
	table := query.Table(s.DB, "cdrs")
	// uuid and cost go as text[], cast by PostgreSQL: the first cast makes
	// the parameter's type the text[] pgx encodes a []string as, in every
	// query mode of the router (prepared, or exec with types inferred).
	insert := `INSERT INTO ` + table + ` (uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec,
			disposition, extension_id, queue_id, rate_id, cost, unrated_reason)
		SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
			$7::timestamptz[], $8::int4[], $9::int4[], $10::text[], $11::int8[], $12::int8[], $13::int8[],
			$14::text[]::numeric[], $15::text[])`
	args := []any{uuids, directions, srcs, dsts, starts, answers, ends, durations, billsecs, dispositions, extensions, queues, rateIDs, costs, reasons}
	// Most batches are new calls. A plain INSERT stores them for about two
	// thirds of what ON CONFLICT DO NOTHING costs PostgreSQL (its
	// speculative insertion checks and marks every row); when a uuid is
	// already stored (a retry) it fails as a whole, having stored nothing,
	// and the batch goes again with ON CONFLICT. The failed attempt uses up
	// ids, and inside a transaction it would abort it: so only when asked,
	// and never in a transaction.
	var rows []cdr
	var err error
	done := false
	if _, inTx := s.DB.Statement.ConnPool.(gorm.TxCommitter); how.optimistic && !inTx {
		rows, err = s.query(ctx, inserted, n, insert+` RETURNING `+inserted.list, args...)
		if err != nil && !uuidTaken(err) {
			return nil, translate(err)
		}
		done = err == nil
	}
	if !done {
		rows, err = s.query(ctx, inserted, n, insert+` ON CONFLICT ON CONSTRAINT cdrs_uuid_key DO NOTHING RETURNING `+inserted.list, args...)
		if err != nil {
			return nil, translate(err)
		}
	}
	byUUID := make(map[string]stored, n)
	for i := range rows {
		byUUID[rows[i].UUID] = stored{row: &rows[i], created: true}
	}
	var before []string
	if len(rows) < n {
		for i := range ins {
			if _, ok := byUUID[ins[i].UUID]; !ok {
				before = append(before, ins[i].UUID)
			}
		}
		old, err := s.query(ctx, existing, len(before), `SELECT `+existing.list+` FROM `+table+` WHERE uuid = ANY($1::text[]::uuid[])`, before)
		if err != nil {
			return nil, translate(err)
		}
		for i := range old {
			byUUID[old[i].UUID] = stored{row: &old[i]}
		}
	}
	out := make([]stored, n)
	for i := range ins {
		st, ok := byUUID[ins[i].UUID]
		if !ok {
			return nil, fmt.Errorf("cdr %s vanished after its insert", ins[i].UUID)
		}
		if st.created {
			st.rating = ins[i].rating
		}
		out[i] = st
	}
	return out, nil
}

// query runs a statement on the handle's connection pool (or transaction)
// and scans every row into cols; errors are the driver's, untranslated. It
// bypasses gorm on purpose: gorm would expand slice arguments into lists,
// and its reflective scan was a fifth of the CPU of a batch ingest.
func (s *Store) query(ctx context.Context, cols columnsOf, expect int, query string, args ...any) ([]cdr, error) {
	rows, err := s.DB.Statement.ConnPool.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanAll(rows, cols, expect)
}

// scanAll scans every row of rows into cols; expect is how many rows are
// likely, to size the slice once.
func scanAll(rows *sql.Rows, cols columnsOf, expect int) ([]cdr, error) {
	out := make([]cdr, 0, expect)
	for rows.Next() {
		out = append(out, cdr{})
		if err := rows.Scan(cols.fields(&out[len(out)-1])...); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// uuidTaken reports whether err is the unique violation of a uuid that is
// already stored.
func uuidTaken(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.UniqueViolation && pg.ConstraintName == "cdrs_uuid_key"
}
