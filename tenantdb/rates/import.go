package rates

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// MaxImportRows bounds one import, and so the memory it takes (the file is
// validated in memory and sent as one document); a larger rate deck is
// imported in parts.
const MaxImportRows = 100_000

// maxImportErrors is how many bad rows one answer lists: enough to fix a
// file in a few rounds, few enough to read.
const maxImportErrors = 50

// Columns are the columns of an import file, in the documented order. The
// header may list them in any order; connect_fee and effective_to may be
// left out (or empty in a row) for their defaults.
var Columns = []string{"prefix", "rate_per_minute", "connect_fee", "min_seconds", "increment_seconds", "effective_from", "effective_to"}

var optionalColumns = []string{"connect_fee", "effective_to"}

// importRow is one validated row, as sent to the database: one JSON
// document holds the whole file, so the insert is one statement whatever
// its size. Amounts are decimals, marshalled as strings.
type importRow struct {
	Line             int             `json:"line"`
	Prefix           string          `json:"prefix"`
	RatePerMinute    decimal.Decimal `json:"rate_per_minute"`
	ConnectFee       decimal.Decimal `json:"connect_fee"`
	MinSeconds       int             `json:"min_seconds"`
	IncrementSeconds int             `json:"increment_seconds"`
	EffectiveFrom    time.Time       `json:"effective_from"`
	EffectiveTo      *time.Time      `json:"effective_to"`
}

// Import adds every rate of a CSV file (a header row, then one rate per
// row) in one transaction: all of them or, on any error, none. Errors name
// the row (its line in the file, the header being row 1) and the column,
// e.g. {"row 17: prefix": "must be 1 to 15 digits ..."}. A period may
// overlap neither an existing rate of its prefix nor another row of the
// file. It returns how many rates were added.
func (s *Store) Import(ctx context.Context, r io.Reader) (int, error) {
	rows, err := readCSV(r)
	if err != nil {
		return 0, err
	}
	if err := overlapsInFile(rows); err != nil {
		return 0, err
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return 0, err
	}
	rates := query.Table(s.DB, "rates")
	err = query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := lockAll(tx); err != nil {
			return err
		}
		if err := overlapsExisting(tx, rates, string(doc)); err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO `+rates+` (prefix, rate_per_minute, connect_fee, min_seconds, increment_seconds, effective_from, effective_to)
			SELECT prefix, rate_per_minute, connect_fee, min_seconds, increment_seconds, effective_from, effective_to
			FROM jsonb_to_recordset(?::jsonb) AS n(prefix text, rate_per_minute numeric, connect_fee numeric,
				min_seconds integer, increment_seconds integer, effective_from timestamptz, effective_to timestamptz)`, string(doc)).Error
	})
	if err != nil {
		return 0, translate(err, 0)
	}
	return len(rows), nil
}

// readCSV parses and validates the file; every row goes through the same
// validation as a JSON create.
func readCSV(r io.Reader) ([]importRow, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, controlplane.Errorf(controlplane.BadRequest, "the CSV is empty; a header row is expected: %s", strings.Join(Columns, ","))
	}
	if err != nil {
		return nil, csvError(err)
	}
	col, err := columns(header)
	if err != nil {
		return nil, err
	}
	var rows []importRow
	fields := controlplane.FieldErrors{}
	bad := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		if len(rows)+bad >= MaxImportRows {
			return nil, controlplane.FieldError("rows", fmt.Sprintf("must be at most %d per import; split the file", MaxImportRows))
		}
		line, _ := cr.FieldPos(0)
		row, err := parseRow(rec, col)
		if err != nil {
			bad++
			if len(fields) < maxImportErrors {
				addRow(fields, line, err)
			}
			continue
		}
		row.Line = line
		rows = append(rows, row)
	}
	if bad > 0 {
		return nil, rowErrors(fields, bad)
	}
	if len(rows) == 0 {
		return nil, controlplane.FieldError("rows", "the CSV has a header but no rates")
	}
	return rows, nil
}

// columns maps each known column to its index in the header.
func columns(header []string) (map[string]int, error) {
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) // a spreadsheet's BOM
		if !slices.Contains(Columns, name) {
			return nil, controlplane.FieldError("header", fmt.Sprintf("has an unknown column %q; the columns are %s", h, strings.Join(Columns, ",")))
		}
		if _, dup := col[name]; dup {
			return nil, controlplane.FieldError("header", fmt.Sprintf("names column %q twice", name))
		}
		col[name] = i
	}
	for _, c := range Columns {
		if _, ok := col[c]; !ok && !slices.Contains(optionalColumns, c) {
			return nil, controlplane.FieldError("header", fmt.Sprintf("lacks the column %q; the columns are %s", c, strings.Join(Columns, ",")))
		}
	}
	return col, nil
}

// parseRow turns one record into a validated row.
func parseRow(rec []string, col map[string]int) (importRow, error) {
	cell := func(name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	fields := controlplane.FieldErrors{}
	// The same text rule as a JSON body's (NUL, invalid UTF-8), so that a
	// cell is refused for what is wrong with it rather than as a bad number.
	for name, i := range col {
		if reason := controlplane.TextProblem(rec[i]); reason != "" {
			fields.Add(name, reason)
		}
	}
	spec := Spec{Prefix: cell("prefix"), EffectiveFrom: cell("effective_from")}
	if v := cell("rate_per_minute"); v != "" {
		m := ParseMoney(v)
		spec.RatePerMinute = &m
	}
	if v := cell("connect_fee"); v != "" {
		m := ParseMoney(v)
		spec.ConnectFee = &m
	}
	spec.MinSeconds = cellInt(fields, "min_seconds", cell("min_seconds"))
	spec.IncrementSeconds = cellInt(fields, "increment_seconds", cell("increment_seconds"))
	if v := cell("effective_to"); v != "" {
		spec.EffectiveTo = &v
	}
	in, err := spec.validate()
	addAll(fields, err)
	if err := fields.Err(); err != nil {
		return importRow{}, err
	}
	return importRow{Prefix: in.prefix, RatePerMinute: in.rate, ConnectFee: in.fee, MinSeconds: in.min,
		IncrementSeconds: in.inc, EffectiveFrom: in.from, EffectiveTo: in.to}, nil
}

// cellInt reads an integer cell; empty is nil (validation says required).
func cellInt(fields controlplane.FieldErrors, name, v string) *int {
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fields.Add(name, "must be an integer")
		one := 1 // keep validation from also calling it missing
		return &one
	}
	return &n
}

// overlapsInFile finds rows of one prefix whose periods overlap. Sorted by
// prefix then start, any overlap shows between neighbours.
func overlapsInFile(rows []importRow) error {
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		ra, rb := &rows[idx[a]], &rows[idx[b]]
		if ra.Prefix != rb.Prefix {
			return ra.Prefix < rb.Prefix
		}
		return ra.EffectiveFrom.Before(rb.EffectiveFrom)
	})
	fields := controlplane.FieldErrors{}
	bad := 0
	for k := 1; k < len(idx); k++ {
		prev, cur := &rows[idx[k-1]], &rows[idx[k]]
		if prev.Prefix != cur.Prefix || (prev.EffectiveTo != nil && !prev.EffectiveTo.After(cur.EffectiveFrom)) {
			continue
		}
		bad++
		if len(fields) < maxImportErrors {
			fields.Add(fmt.Sprintf("row %d: effective_from", cur.Line),
				fmt.Sprintf("overlaps row %d of the file (prefix %s, %s); periods of one prefix never overlap", prev.Line, prev.Prefix, period(prev.EffectiveFrom, prev.EffectiveTo)))
		}
	}
	if bad > 0 {
		return rowErrors(fields, bad)
	}
	return nil
}

// overlapsExisting finds rows of doc that overlap a rate already stored;
// run it under lockAll.
func overlapsExisting(tx *gorm.DB, rates, doc string) error {
	var hits []struct {
		Line          int
		ID            int64
		Prefix        string
		EffectiveFrom time.Time
		EffectiveTo   *time.Time
	}
	err := tx.Raw(`SELECT n.line, r.id, r.prefix, r.effective_from, r.effective_to
		FROM jsonb_to_recordset(?::jsonb) AS n(line integer, prefix text, effective_from timestamptz, effective_to timestamptz)
		JOIN `+rates+` r ON r.prefix = n.prefix
			AND r.effective_from < coalesce(n.effective_to, 'infinity')
			AND coalesce(r.effective_to, 'infinity') > n.effective_from
		ORDER BY n.line`, doc).Scan(&hits).Error
	if err != nil || len(hits) == 0 {
		return err
	}
	fields := controlplane.FieldErrors{}
	for _, h := range hits[:min(len(hits), maxImportErrors)] {
		fields.Add(fmt.Sprintf("row %d: effective_from", h.Line),
			fmt.Sprintf("overlaps the existing rate %d (prefix %s, %s); periods of one prefix never overlap", h.ID, h.Prefix, period(h.EffectiveFrom, h.EffectiveTo)))
	}
	return rowErrors(fields, len(hits))
}

// addRow files the field errors of one row under "row N: field".
func addRow(fields controlplane.FieldErrors, line int, err error) {
	var de *controlplane.Error
	if errors.As(err, &de) {
		for k, v := range de.Fields {
			fields.Add(fmt.Sprintf("row %d: %s", line, k), v)
		}
	}
}

// rowErrors is the Invalid error of an import: nothing was stored.
func rowErrors(fields controlplane.FieldErrors, bad int) error {
	msg := fmt.Sprintf("%d rows of the CSV are invalid; nothing was imported", bad)
	if bad == 1 {
		msg = "1 row of the CSV is invalid; nothing was imported"
	}
	if bad > maxImportErrors {
		msg += fmt.Sprintf(" (the first %d are listed)", maxImportErrors)
	}
	return &controlplane.Error{Code: controlplane.Invalid, Message: msg, Fields: fields}
}

// csvError reports a file that is not CSV (400) or a row whose number of
// cells differs from the header's (422), naming the row.
func csvError(err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return &controlplane.Error{Code: controlplane.BadRequest, Message: "the CSV could not be read", Err: err}
	}
	row := fmt.Sprintf("row %d", pe.Line)
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return controlplane.FieldError(row, "has a different number of cells than the header")
	}
	return &controlplane.Error{Code: controlplane.BadRequest, Message: "malformed CSV at " + row + ": " + pe.Err.Error(), Fields: map[string]string{row: pe.Err.Error()}}
}
