package rates

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// MaxPrefixLen is the longest prefix: an E.164 number has at most 15 digits.
const MaxPrefixLen = 15

var (
	sixty    = decimal.NewFromInt(60)
	costUnit = decimal.New(1, -CostScale) // 0.0001, the smallest cost step
)

// Billable returns the seconds billed for a call of billsec seconds under
// blocks of minSeconds then increment: 0 when billsec is 0, else
// minSeconds + ceil(max(0, billsec − minSeconds) / increment) × increment.
// So 47 s bills 48 on 30/6, 60 on 60/60, 47 on 1/1; 61 s bills 120 on 60/60.
func Billable(billsec, minSeconds, increment int) int {
	if billsec <= 0 {
		return 0
	}
	over := max(0, billsec-minSeconds)
	return minSeconds + (over+increment-1)/increment*increment
}

// Billable returns the seconds r bills for a call of billsec seconds.
func (r *Rate) Billable(billsec int) int {
	return Billable(billsec, r.MinSeconds, r.IncrementSeconds)
}

// Cost prices a call of billsec seconds at r: connect_fee + billable/60 ×
// rate_per_minute, rounded up to 4 decimal places, with exponent -4. A call
// with no billed second costs 0, connect fee included.
//
// The arithmetic is exact: 60 × cost = 60 × connect_fee + billable ×
// rate_per_minute is a decimal with the rate's places, and one division by
// 60 gives the quotient at 4 places and a remainder that decides the
// rounding up, so no intermediate value is ever rounded.
func (r *Rate) Cost(billsec int) decimal.Decimal {
	billable := r.Billable(billsec)
	if billable == 0 {
		return decimal.New(0, -CostScale)
	}
	total := r.ConnectFee.Mul(sixty).Add(r.RatePerMinute.Mul(decimal.NewFromInt(int64(billable))))
	q, rem := total.QuoRem(sixty, CostScale)
	if rem.Sign() > 0 {
		q = q.Add(costUnit)
	}
	return q
}

// Digits returns the number rating matches prefixes against: dst without a
// leading +, which must leave only digits. ok is false for anything else
// ("anonymous", "1001*", "").
func Digits(dst string) (digits string, ok bool) {
	d := strings.TrimPrefix(dst, "+")
	if d == "" {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", false
		}
	}
	return d, true
}

// Book is the rates a batch of calls may be priced at, indexed by prefix
// for the longest-prefix lookup. Loading it once per batch (Store.Book)
// makes rating a thousand calls one query, not a thousand.
type Book struct {
	byPrefix map[string][]Rate
}

// Find returns the rate of the longest prefix of number (digits) that is in
// effect at instant at (effective_from ≤ at < effective_to), or nil. A
// prefix whose only rates are future-dated or expired is skipped, so the
// next shorter prefix prices the call.
func (b *Book) Find(number string, at time.Time) *Rate {
	for n := min(len(number), MaxPrefixLen); n >= 1; n-- {
		list := b.byPrefix[number[:n]]
		for i := range list {
			r := &list[i]
			if !at.Before(r.EffectiveFrom) && (r.EffectiveTo == nil || at.Before(*r.EffectiveTo)) {
				return r
			}
		}
	}
	return nil
}

// Book loads, in one query, every rate that could price a call to one of
// numbers (digits, see Digits) answered within [from, to]: the rates of any
// prefix of those numbers whose period intersects that window.
func (s *Store) Book(ctx context.Context, numbers []string, from, to time.Time) (*Book, error) {
	b := &Book{byPrefix: map[string][]Rate{}}
	// A batch calls few distinct numbers, and those share most prefixes:
	// collect each prefix once. The set holds every prefix of what it
	// holds, so the first prefix of n found there ends n's walk.
	set := map[string]struct{}{}
	for _, n := range numbers {
		for l := min(len(n), MaxPrefixLen); l >= 1; l-- {
			if _, seen := set[n[:l]]; seen {
				break
			}
			set[n[:l]] = struct{}{}
		}
	}
	if len(set) == 0 {
		return b, nil
	}
	prefixes := slices.Sorted(maps.Keys(set))
	js, err := json.Marshal(prefixes)
	if err != nil {
		return nil, err
	}
	// One array parameter whatever the batch size: an IN list of up to
	// 15 × batch placeholders would approach the protocol's 65535 limit.
	var rows []rate
	err = s.DB.WithContext(ctx).
		Where("prefix IN (SELECT jsonb_array_elements_text(?::jsonb))", string(js)).
		Where("effective_from <= ? AND (effective_to IS NULL OR effective_to > ?)", to, from).
		Find(&rows).Error
	if err != nil {
		return nil, translate(err, 0)
	}
	for i := range rows {
		r := rows[i].public()
		b.byPrefix[r.Prefix] = append(b.byPrefix[r.Prefix], r)
	}
	return b, nil
}
