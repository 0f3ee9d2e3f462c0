package rates_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

func TestCost(t *testing.T) {
	t.Parallel()
	rate := func(perMinute, fee string, min, inc int) *rates.Rate {
		return &rates.Rate{RatePerMinute: rates.ParseMoney(perMinute), ConnectFee: rates.ParseMoney(fee), MinSeconds: min, IncrementSeconds: inc}
	}
	cases := []struct {
		name     string
		rate     *rates.Rate
		billsec  int
		billable int
		cost     string
	}{
		{"docs/DOMAIN.md's worked example: 30/6, 47 s", rate("0.0120", "0.0150", 30, 6), 47, 48, "0.0246"},
		{"same call on 60/60", rate("0.0120", "0.0150", 60, 60), 47, 60, "0.0270"},
		{"same call on 1/1", rate("0.0120", "0.0150", 1, 1), 47, 47, "0.0244"}, // 47/60 × 0.0120 = 0.0094 exactly
		{"61 s on 60/60 bills two blocks", rate("0.0120", "0", 60, 60), 61, 120, "0.0240"},
		{"exactly the first block", rate("0.0120", "0", 30, 6), 30, 30, "0.0060"},
		{"shorter than the first block", rate("0.0120", "0", 30, 6), 1, 30, "0.0060"},
		{"one second over a block", rate("0.0120", "0", 30, 6), 31, 36, "0.0072"},
		{"billsec 0 costs nothing, connect fee included", rate("0.0120", "0.0150", 30, 6), 0, 0, "0.0000"},
		{"rounds up at the 5th decimal", rate("0.01001", "0", 60, 60), 60, 60, "0.0101"},
		{"rounds up a tiny remainder", rate("0.00001", "0", 1, 1), 1, 1, "0.0001"},
		{"exact 4 decimals stay", rate("0.0060", "0", 60, 60), 60, 60, "0.0060"},
		{"free rate with a fee", rate("0", "0.10000", 60, 60), 5, 60, "0.1000"},
		{"fee and rate rounded together, once", rate("0.00003", "0.00003", 60, 60), 60, 60, "0.0001"},
	}
	for _, tc := range cases {
		require.Equal(t, tc.billable, tc.rate.Billable(tc.billsec), tc.name)
		got := tc.rate.Cost(tc.billsec)
		require.Equal(t, tc.cost, got.StringFixed(4), tc.name)
		require.Equal(t, int32(-4), got.Exponent(), "%s: a cost carries 4 places", tc.name)
	}
}

func TestDigits(t *testing.T) {
	for in, want := range map[string]string{"+442071838750": "442071838750", "0044207": "0044207", "1001": "1001"} {
		got, ok := rates.Digits(in)
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "+", "anonymous", "1001*", "++44", "+44 20", "４４"} {
		_, ok := rates.Digits(in)
		require.False(t, ok, in)
	}
}

// TestBook covers the rate lookup: the longest prefix in effect at the
// answer time wins; future-dated and expired rates are skipped.
func TestBook(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, s *rates.Store) {
		ctx := context.Background()
		create := func(sp rates.Spec, fee string) *rates.Rate {
			m := rates.ParseMoney(fee)
			sp.ConnectFee = &m
			r, err := s.Create(ctx, sp)
			require.NoError(t, err)
			return r
		}
		uk := create(spec("44", "0.0300", 30, 6, "2020-01-01T00:00:00Z", ""), "0.0150")
		old := create(spec("4420", "0.0150", 30, 6, "2020-01-01T00:00:00Z", "2025-01-01T00:00:00Z"), "0.0150")
		london := create(spec("4420", "0.0120", 30, 6, "2025-01-01T00:00:00Z", ""), "0.0150")
		create(spec("44207", "0.0010", 30, 6, "2030-01-01T00:00:00Z", ""), "0")                      // future-dated
		create(spec("442071", "0.0010", 30, 6, "2020-01-01T00:00:00Z", "2025-03-01T00:00:00Z"), "0") // expired by then
		create(spec("33", "0.0200", 60, 60, "2020-01-01T00:00:00Z", ""), "0")

		at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
		book, err := s.Book(ctx, []string{"442071838750", "4413", "4420"}, at, at)
		require.NoError(t, err)
		r := book.Find("442071838750", at)
		require.NotNil(t, r)
		require.Equal(t, london.ID, r.ID, "44207 is future-dated and 442071 expired: 4420 prices the call")
		require.Equal(t, "0.0246", r.Cost(47).StringFixed(4), "the worked example, to the cent")
		require.Equal(t, uk.ID, book.Find("4413", at).ID)
		require.Equal(t, london.ID, book.Find("4420", at).ID, "a number equal to a prefix matches it")
		require.Nil(t, book.Find("33123", at), "33 was not loaded: not a prefix of any number asked for")

		// On the last instant of the old period, and on the first of the new.
		before := time.Date(2024, 12, 31, 23, 59, 59, 999999000, time.UTC)
		edge := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		book, err = s.Book(ctx, []string{"4420999"}, before, edge)
		require.NoError(t, err)
		require.Equal(t, old.ID, book.Find("4420999", before).ID)
		require.Equal(t, london.ID, book.Find("4420999", edge).ID, "effective_to is exclusive")

		// Where 442071 was still in effect, it wins over 4420.
		early := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
		book, err = s.Book(ctx, []string{"442071838750"}, early, early)
		require.NoError(t, err)
		require.Equal(t, "442071", book.Find("442071838750", early).Prefix)

		empty, err := s.Book(ctx, nil, at, at)
		require.NoError(t, err)
		require.Nil(t, empty.Find("44", at))
	})
}

// A tenant's rates are its own: another tenant in the same database (schema
// mode) sees none of them and never waits on their locks.
func TestRatesAreTenantScoped(t *testing.T) {
	t.Parallel()
	f := tenanttest.New(t, controlplane.IsolationSchema, 2, router.Config{})
	dbA, a := f.Tenant(t, 0)
	dbB, b := f.Tenant(t, 1)
	sa, sb := &rates.Store{DB: dbA, Tenant: a}, &rates.Store{DB: dbB, Tenant: b}
	ctx := context.Background()
	r, err := sa.Create(ctx, spec("44", "0.03", 60, 60, "2025-01-01T00:00:00Z", ""))
	require.NoError(t, err)
	_, err = sb.Create(ctx, spec("44", "0.05", 60, 60, "2025-01-01T00:00:00Z", ""))
	require.NoError(t, err, "the same prefix and period in another tenant is no overlap")
	_, total, err := sb.List(ctx, "", 10, 0)
	require.NoError(t, err)
	require.Equal(t, 1, total)
	got, err := sb.Get(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, "0.05000", got.RatePerMinute.StringFixed(5), "id 1 in B is B's own rate")
}
