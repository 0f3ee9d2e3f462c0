package rates

import (
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/laracopilot/controlplane/controlplane"
)

// Scales of the money columns: rates are numeric(15,5), costs numeric(15,4).
const (
	RateScale = 5
	CostScale = 4
)

// maxAmount bounds an amount to what numeric(15,5) holds: 10 integer digits.
var maxAmount = decimal.New(1, 10)

// Money is an amount of money: shopspring/decimal in Go, numeric in
// PostgreSQL and a JSON string in responses, so no amount ever passes
// through a binary float. Responses show the amount at its scale ("0.01200"
// for a rate, "0.0246" for a cost); requests may send a JSON number (0.012)
// or a string ("0.012"), both read digit by digit.
type Money struct {
	decimal.Decimal
	// invalid is set when the client sent something that is not a decimal
	// number. Validation reports it naming the field, rather than the
	// decoder refusing the whole body as malformed.
	invalid bool
}

// NewMoney returns d at the given scale (decimal places), as responses
// show it; d must not have more places than that.
func NewMoney(d decimal.Decimal, scale int32) Money {
	return Money{Decimal: d.Round(scale)}
}

// ParseMoney reads a decimal number as text (a JSON number or the content
// of a JSON string or CSV cell). What is not one is kept as invalid, for
// validation to report; absurdly long input or exponents are refused before
// any arithmetic could be asked to build a huge number from them.
func ParseMoney(s string) Money {
	if s == "" || len(s) > 40 {
		return Money{invalid: true}
	}
	d, err := decimal.NewFromString(s)
	if err != nil || d.Exponent() < -30 || d.Exponent() > 30 {
		return Money{invalid: true}
	}
	return Money{Decimal: d}
}

// UnmarshalJSON accepts a JSON number or a string holding one; anything
// else is kept as invalid (see Money).
func (m *Money) UnmarshalJSON(b []byte) error {
	s := string(b)
	if strings.HasPrefix(s, `"`) {
		u, err := strconv.Unquote(s)
		if err != nil {
			*m = Money{invalid: true}
			return nil
		}
		s = u
	}
	*m = ParseMoney(s)
	return nil
}

// MarshalJSON writes the amount as a string with the places it carries.
func (m Money) MarshalJSON() ([]byte, error) {
	places := max(-m.Exponent(), 0)
	return []byte(strconv.Quote(m.StringFixed(places))), nil
}

// check adds to fields why m is not a usable amount at scale places, if it
// is not: a decimal number ≥ 0 with at most places decimals, below 10^10.
func (m Money) check(fields controlplane.FieldErrors, name string, places int32) {
	switch {
	case m.invalid:
		fields.Add(name, "must be a decimal number such as 0.0120 (a JSON number or string)")
	case m.Sign() < 0:
		fields.Add(name, "must be at least 0")
	case !m.Equal(m.Truncate(places)):
		fields.Add(name, "must have at most "+strconv.Itoa(int(places))+" decimal places")
	case m.Cmp(maxAmount) >= 0:
		fields.Add(name, "must be less than 10000000000")
	}
}
