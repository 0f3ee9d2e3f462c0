package cdrs

import (
	"context"
	"encoding/json"
	"time"

	"github.com/laracopilot/controlplane/tenantdb/query"
)

// RerateBatch is how many CDRs one step of a re-rating reads and writes.
const RerateBatch = 1000

// Rerating is the outcome of Rerate.
type Rerating struct {
	// From and To are the period re-rated, resolved to instants: [from, to).
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Examined CDRs started in the period; Changed of them got a different
	// rate, cost or reason; Rated and Unrated count them after the run.
	Examined int `json:"examined"`
	Changed  int `json:"changed"`
	Rated    int `json:"rated"`
	Unrated  int `json:"unrated"`
}

// Rerate prices again, with the rates as they are now, every CDR that
// started in the period (bounds as for List; both required). It works in
// batches of RerateBatch, newest first by keyset like List: one read, one
// rates query and at most one write per batch, and a CDR whose rating does
// not change is not written. Each batch commits on its own, so a long
// period never holds locks for long; a run that fails midway leaves the
// batches before re-rated, and running it again finishes the job.
func (s *Store) Rerate(ctx context.Context, from, to string) (*Rerating, error) {
	lo, hi, err := s.period(ctx, from, to)
	if err != nil {
		return nil, err
	}
	out := &Rerating{From: lo, To: hi}
	var after *cursor
	for {
		q := s.DB.WithContext(ctx).Select("id, start_at, direction, dst, answer_at, billsec, rate_id, cost, unrated_reason").
			Where("start_at >= ? AND start_at < ?", lo, hi)
		if after != nil {
			q = q.Where("(start_at, id) < (?, ?)", after.startAt, after.id)
		}
		var rows []cdr
		if err := q.Order("start_at DESC, id DESC").Limit(RerateBatch).Find(&rows).Error; err != nil {
			return nil, translate(err)
		}
		if len(rows) == 0 {
			break
		}
		if err := s.rerate(ctx, rows, out); err != nil {
			return nil, err
		}
		if len(rows) < RerateBatch {
			break
		}
		last := rows[len(rows)-1]
		after = &cursor{startAt: last.StartAt, id: last.ID}
	}
	return out, nil
}

// rerate prices one batch and writes the CDRs whose rating changed.
func (s *Store) rerate(ctx context.Context, rows []cdr, out *Rerating) error {
	calls := make([]call, len(rows))
	for i := range rows {
		calls[i] = call{direction: rows[i].Direction, dst: rows[i].Dst, answerAt: rows[i].AnswerAt, billsec: rows[i].Billsec}
	}
	book, err := s.loadBook(ctx, calls)
	if err != nil {
		return err
	}
	type update struct {
		ID int64 `json:"id"`
		rating
	}
	var ups []update
	for i := range rows {
		rt := price(book, calls[i])
		out.Examined++
		if rt.Cost != nil {
			out.Rated++
		} else {
			out.Unrated++
		}
		if !rows[i].rated(rt) {
			ups = append(ups, update{ID: rows[i].ID, rating: rt})
		}
	}
	if len(ups) == 0 {
		return nil
	}
	doc, err := json.Marshal(ups)
	if err != nil {
		return err
	}
	res := s.DB.WithContext(ctx).Exec(`UPDATE `+query.Table(s.DB, "cdrs")+` AS c
		SET rate_id = u.rate_id, cost = u.cost, unrated_reason = u.unrated_reason
		FROM jsonb_to_recordset(?::jsonb) AS u(id bigint, rate_id bigint, cost numeric, unrated_reason text)
		WHERE c.id = u.id`, string(doc))
	if res.Error != nil {
		return translate(res.Error)
	}
	out.Changed += int(res.RowsAffected)
	return nil
}

// rated reports whether the row already carries rating rt.
func (r *cdr) rated(rt rating) bool {
	sameID := (r.RateID == nil) == (rt.RateID == nil) && (r.RateID == nil || *r.RateID == *rt.RateID)
	sameCost := r.Cost.Valid == (rt.Cost != nil) && (!r.Cost.Valid || r.Cost.Decimal.Equal(*rt.Cost))
	sameReason := (r.UnratedReason == nil) == (rt.UnratedReason == nil) && (r.UnratedReason == nil || *r.UnratedReason == *rt.UnratedReason)
	return sameID && sameCost && sameReason
}
