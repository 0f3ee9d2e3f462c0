package cdrs

import (
	"context"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// bound is one end of a period as the client wrote it: an RFC 3339
// instant, or a local date in the tenant's timezone. Local dates are
// turned into instants by PostgreSQL, in the same statement that uses
// them, so the boundaries are the very ones reports group by.
type bound struct {
	at   time.Time // the instant, when date is ""
	date string    // YYYY-MM-DD
}

const boundReason = "must be an RFC 3339 instant (2025-11-01T00:00:00Z) or a local date (2025-11-01) in the tenant's timezone"

// parseBound reads an optional bound; nil when s is empty or invalid (then
// fields says why).
func parseBound(fields controlplane.FieldErrors, name, s string) *bound {
	if s == "" {
		return nil
	}
	if d, ok := parseDate(s); ok {
		return &bound{date: d.Format(time.DateOnly)}
	}
	if t, ok := parseInstant(s); ok {
		return &bound{at: t}
	}
	fields.Add(name, boundReason)
	return nil
}

// parseInstant reads an RFC 3339 instant at the database's precision. Its
// UTC year must be 1 to 9999: PostgreSQL has no year 0 and JSON no year
// 10000, so anything else would fail later as an internal error.
func parseInstant(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UTC().Year() < 1 || t.UTC().Year() > 9999 {
		return time.Time{}, false
	}
	return t.UTC().Truncate(time.Microsecond), true
}

// parseDate reads a local date YYYY-MM-DD of the years 1 to 9998 (the day
// after it must exist too).
func parseDate(s string) (time.Time, bool) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil || d.Year() < 1 || d.Year() > 9998 {
		return time.Time{}, false
	}
	return d, true
}

// start is the SQL of the first instant the bound includes: the instant
// itself, or the date's local midnight. Where a DST change skips local
// midnight, PostgreSQL reads the missing time with the offset before the
// change, which lands on the day's first real instant.
func (b *bound) start(tz string) (string, []any) {
	if b.date == "" {
		return "?::timestamptz", []any{b.at}
	}
	return "(?::date)::timestamp AT TIME ZONE ?", []any{b.date, tz}
}

// end is the SQL of the first instant after the bound: the instant itself
// (an instant "to" is exclusive), or the next local midnight (a date "to"
// includes the whole day, however long it is).
func (b *bound) end(tz string) (string, []any) {
	if b.date == "" {
		return "?::timestamptz", []any{b.at}
	}
	return "((?::date) + 1)::timestamp AT TIME ZONE ?", []any{b.date, tz}
}

// period resolves two required bounds to instants [from, to) in one round
// trip, for the operations that report them (rerate).
func (s *Store) period(ctx context.Context, from, to string) (time.Time, time.Time, error) {
	fields := controlplane.FieldErrors{}
	f, t := parseBound(fields, "from", from), parseBound(fields, "to", to)
	for name, v := range map[string]string{"from": from, "to": to} {
		if v == "" {
			fields.Add(name, "is required")
		}
	}
	if err := fields.Err(); err != nil {
		return time.Time{}, time.Time{}, err
	}
	fromSQL, fromArgs := f.start(s.Tenant.Timezone)
	toSQL, toArgs := t.end(s.Tenant.Timezone)
	var out struct{ Lo, Hi time.Time }
	if err := s.DB.WithContext(ctx).Raw("SELECT "+fromSQL+" AS lo, "+toSQL+" AS hi", append(fromArgs, toArgs...)...).Scan(&out).Error; err != nil {
		return time.Time{}, time.Time{}, translate(err)
	}
	if !out.Hi.After(out.Lo) {
		return time.Time{}, time.Time{}, controlplane.FieldError("to", "must be after from")
	}
	return out.Lo.UTC(), out.Hi.UTC(), nil
}
