package cdrs

import (
	"context"
	"time"

	"github.com/shopspring/decimal"

	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// Why a call has no cost (unrated_reason). Unrated calls are stored and
// listed like any other; their cost is null.
const (
	// NotAnswered: no answer_at, so nothing was billable.
	NotAnswered = "not_answered"
	// InternalCall: an internal call stays on the tenant's PBX and is never
	// charged; its dst is an extension, which a prefix must not price.
	InternalCall = "internal"
	// InvalidDst: dst is not a number once a leading + is stripped.
	InvalidDst = "invalid_dst"
	// NoRate: no prefix of dst has a rate in effect at the answer time.
	NoRate = "no_rate"
	// CostOutOfRange: the cost does not fit numeric(15,4) (at least 10^11),
	// which only an absurd rate or duration reaches.
	CostOutOfRange = "cost_out_of_range"
)

// maxCost is the first cost a numeric(15,4) cannot hold.
var maxCost = decimal.New(1, 11)

// call is what rating looks at.
type call struct {
	direction, dst string
	answerAt       *time.Time
	billsec        int
}

// number returns the digits a call is rated by, or why it is not rated.
func (c call) number() (digits, reason string) {
	switch {
	case c.answerAt == nil:
		return "", NotAnswered
	case c.direction == "internal":
		return "", InternalCall
	}
	d, ok := rates.Digits(c.dst)
	if !ok {
		return "", InvalidDst
	}
	return d, ""
}

// loadBook loads, in one query, the rates that can price calls: those of
// every prefix of their numbers, in effect at some point of the span of
// their answer times.
func (s *Store) loadBook(ctx context.Context, calls []call) (*rates.Book, error) {
	var numbers []string
	var first, last time.Time
	for _, c := range calls {
		d, reason := c.number()
		if reason != "" {
			continue
		}
		numbers = append(numbers, d)
		if first.IsZero() || c.answerAt.Before(first) {
			first = *c.answerAt
		}
		if c.answerAt.After(last) {
			last = *c.answerAt
		}
	}
	return (&rates.Store{DB: s.DB, Tenant: s.Tenant}).Book(ctx, numbers, first, last)
}

// price rates one call from book: the longest prefix in effect at the
// answer time, then rates.Rate.Cost.
func price(book *rates.Book, c call) rating {
	digits, reason := c.number()
	if reason != "" {
		return unrated(reason)
	}
	r := book.Find(digits, *c.answerAt)
	if r == nil {
		return unrated(NoRate)
	}
	cost := r.Cost(c.billsec)
	if cost.Cmp(maxCost) >= 0 {
		return unrated(CostOutOfRange)
	}
	id := r.ID
	return rating{RateID: &id, Cost: &cost}
}

func unrated(reason string) rating { return rating{UnratedReason: &reason} }

// rate prices every input of a batch with one rates query.
func (s *Store) rate(ctx context.Context, ins []input) error {
	calls := make([]call, len(ins))
	for i := range ins {
		calls[i] = call{direction: ins[i].Direction, dst: ins[i].Dst, answerAt: ins[i].AnswerAt, billsec: ins[i].Billsec}
	}
	book, err := s.loadBook(ctx, calls)
	if err != nil {
		return err
	}
	for i := range ins {
		ins[i].rating = price(book, calls[i])
	}
	return nil
}
