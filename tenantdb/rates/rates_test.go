package rates_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// bothModes runs fn against a tenant in each isolation mode.
func bothModes(t *testing.T, fn func(t *testing.T, s *rates.Store)) {
	for _, mode := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			f := tenanttest.New(t, mode, 1, router.Config{})
			db, tn := f.Tenant(t, 0)
			fn(t, &rates.Store{DB: db, Tenant: tn})
		})
	}
}

// spec builds a rate; to is optional ("" for open-ended).
func spec(prefix, perMinute string, min, inc int, from, to string) rates.Spec {
	rpm := rates.ParseMoney(perMinute)
	s := rates.Spec{Prefix: prefix, RatePerMinute: &rpm, MinSeconds: &min, IncrementSeconds: &inc, EffectiveFrom: from}
	if to != "" {
		s.EffectiveTo = &to
	}
	return s
}

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var de *controlplane.Error
	require.ErrorAs(t, err, &de)
	return de.Fields
}

func TestRateCRUD(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, s *rates.Store) {
		ctx := context.Background()
		sp := spec("4420", "0.012", 30, 6, "2025-01-01T00:00:00Z", "")
		fee := rates.ParseMoney("0.015")
		sp.ConnectFee = &fee
		r, err := s.Create(ctx, sp)
		require.NoError(t, err)
		raw, err := json.Marshal(r)
		require.NoError(t, err)
		var got map[string]any
		require.NoError(t, json.Unmarshal(raw, &got))
		require.Equal(t, "0.01200", got["rate_per_minute"], "money is a string at the column's scale")
		require.Equal(t, "0.01500", got["connect_fee"])
		require.Equal(t, "2025-01-01T00:00:00Z", got["effective_from"])
		require.Nil(t, got["effective_to"])

		read, err := s.Get(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, r, read)

		_, err = s.Create(ctx, spec("44", "0.03", 60, 60, "2024-01-01T00:00:00Z", ""))
		require.NoError(t, err)
		_, err = s.Create(ctx, spec("33", "0.02", 60, 60, "2024-01-01T00:00:00Z", ""))
		require.NoError(t, err)
		list, total, err := s.List(ctx, "44", 10, 0)
		require.NoError(t, err)
		require.Equal(t, 2, total, "prefix filters rates whose prefix starts with it")
		require.Equal(t, []string{"44", "4420"}, []string{list[0].Prefix, list[1].Prefix})
		_, _, err = s.List(ctx, "4a", 10, 0)
		require.Contains(t, fieldsOf(t, err), "prefix")

		// PATCH: "effective_to" sets, null clears; absent leaves alone.
		p, err := s.Patch(ctx, r.ID, rates.Patch{EffectiveTo: json.RawMessage(`"2026-01-01T00:00:00+01:00"`)})
		require.NoError(t, err)
		require.Equal(t, "2025-12-31T23:00:00Z", p.EffectiveTo.Format("2006-01-02T15:04:05Z07:00"))
		read, err = s.Get(ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, p, read, "an update answers what a read returns, to the microsecond")
		min := 60
		p, err = s.Patch(ctx, r.ID, rates.Patch{MinSeconds: &min})
		require.NoError(t, err)
		require.NotNil(t, p.EffectiveTo)
		require.Equal(t, 60, p.MinSeconds)
		p, err = s.Patch(ctx, r.ID, rates.Patch{EffectiveTo: json.RawMessage(`null`)})
		require.NoError(t, err)
		require.Nil(t, p.EffectiveTo)
		_, err = s.Patch(ctx, r.ID, rates.Patch{EffectiveTo: json.RawMessage(`5`)})
		require.Contains(t, fieldsOf(t, err), "effective_to")

		// PUT: left-out optional fields take their defaults.
		p, err = s.Replace(ctx, r.ID, spec("4420", "0.0125", 1, 1, "2025-01-01T00:00:00Z", ""))
		require.NoError(t, err)
		require.Equal(t, "0.00000", p.ConnectFee.StringFixed(5))
		require.Equal(t, "0.01250", p.RatePerMinute.StringFixed(5))

		require.NoError(t, s.Delete(ctx, r.ID))
		_, err = s.Get(ctx, r.ID)
		require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(err))
		require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(s.Delete(ctx, r.ID)))
		_, err = s.Patch(ctx, r.ID, rates.Patch{MinSeconds: &min})
		require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(err))
	})
}

func TestRateValidation(t *testing.T) {
	t.Parallel()
	f := tenanttest.New(t, controlplane.IsolationSchema, 1, router.Config{})
	db, tn := f.Tenant(t, 0)
	s := &rates.Store{DB: db, Tenant: tn}
	ok := func() rates.Spec { return spec("44", "0.03", 60, 60, "2025-01-01T00:00:00Z", "") }
	with := func(change func(*rates.Spec)) rates.Spec { sp := ok(); change(&sp); return sp }
	money := func(s string) *rates.Money { m := rates.ParseMoney(s); return &m }
	intp := func(n int) *int { return &n }
	str := func(s string) *string { return &s }
	cases := []struct {
		name  string
		spec  rates.Spec
		field string
	}{
		{"empty prefix", with(func(s *rates.Spec) { s.Prefix = "" }), "prefix"},
		{"plus in prefix", with(func(s *rates.Spec) { s.Prefix = "+44" }), "prefix"},
		{"16-digit prefix", with(func(s *rates.Spec) { s.Prefix = "1234567890123456" }), "prefix"},
		{"missing rate", with(func(s *rates.Spec) { s.RatePerMinute = nil }), "rate_per_minute"},
		{"negative rate", with(func(s *rates.Spec) { s.RatePerMinute = money("-0.01") }), "rate_per_minute"},
		{"six decimals", with(func(s *rates.Spec) { s.RatePerMinute = money("0.000001") }), "rate_per_minute"},
		{"not a number", with(func(s *rates.Spec) { s.RatePerMinute = money("abc") }), "rate_per_minute"},
		{"huge", with(func(s *rates.Spec) { s.RatePerMinute = money("1e10") }), "rate_per_minute"},
		{"huge exponent", with(func(s *rates.Spec) { s.RatePerMinute = money("1e-999999") }), "rate_per_minute"},
		{"negative fee", with(func(s *rates.Spec) { s.ConnectFee = money("-1") }), "connect_fee"},
		{"missing min", with(func(s *rates.Spec) { s.MinSeconds = nil }), "min_seconds"},
		{"zero min", with(func(s *rates.Spec) { s.MinSeconds = intp(0) }), "min_seconds"},
		{"zero increment", with(func(s *rates.Spec) { s.IncrementSeconds = intp(0) }), "increment_seconds"},
		{"huge increment", with(func(s *rates.Spec) { s.IncrementSeconds = intp(1 << 40) }), "increment_seconds"},
		{"missing from", with(func(s *rates.Spec) { s.EffectiveFrom = "" }), "effective_from"},
		{"date only", with(func(s *rates.Spec) { s.EffectiveFrom = "2025-01-01" }), "effective_from"},
		{"no offset", with(func(s *rates.Spec) { s.EffectiveFrom = "2025-01-01T00:00:00" }), "effective_from"},
		{"year 0", with(func(s *rates.Spec) { s.EffectiveFrom = "0000-06-01T00:00:00Z" }), "effective_from"},
		{"year 10000 in UTC", with(func(s *rates.Spec) { s.EffectiveTo = str("9999-12-31T23:00:00-02:00") }), "effective_to"},
		{"to before from", with(func(s *rates.Spec) { s.EffectiveTo = str("2024-12-31T00:00:00Z") }), "effective_to"},
		{"empty period", with(func(s *rates.Spec) { s.EffectiveTo = str("2025-01-01T00:00:00Z") }), "effective_to"},
		{"bad to", with(func(s *rates.Spec) { s.EffectiveTo = str("soon") }), "effective_to"},
	}
	for _, tc := range cases {
		_, err := s.Create(context.Background(), tc.spec)
		require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err), tc.name)
		require.Contains(t, fieldsOf(t, err), tc.field, tc.name)
	}
	_, total, err := s.List(context.Background(), "", 10, 0)
	require.NoError(t, err)
	require.Zero(t, total)
}

func TestMoneyJSON(t *testing.T) {
	var sp rates.Spec
	require.NoError(t, json.Unmarshal([]byte(`{"rate_per_minute": 0.1234567890123456789, "connect_fee": "0.015"}`), &sp))
	require.Equal(t, "0.1234567890123456789", sp.RatePerMinute.String(), "a JSON number is read as decimal, never via float64")
	require.Equal(t, "0.015", sp.ConnectFee.String())
	require.NoError(t, json.Unmarshal([]byte(`{"rate_per_minute": true}`), &sp), "a wrong type is left to validation, which names the field")
	out, err := json.Marshal(rates.NewMoney(rates.ParseMoney("0.0246").Decimal, rates.CostScale))
	require.NoError(t, err)
	require.Equal(t, `"0.0246"`, string(out))
}

func TestOverlappingPeriods(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, s *rates.Store) {
		ctx := context.Background()
		old, err := s.Create(ctx, spec("4420", "0.015", 30, 6, "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"))
		require.NoError(t, err)
		// Half-open: a period may start where the previous one ends.
		cur, err := s.Create(ctx, spec("4420", "0.012", 30, 6, "2025-01-01T00:00:00Z", ""))
		require.NoError(t, err)
		// Another prefix is independent.
		_, err = s.Create(ctx, spec("442", "0.02", 30, 6, "2024-06-01T00:00:00Z", ""))
		require.NoError(t, err)

		for _, sp := range []rates.Spec{
			spec("4420", "0.01", 1, 1, "2024-12-31T23:59:59Z", "2025-01-01T00:00:01Z"), // straddles both
			spec("4420", "0.01", 1, 1, "2030-01-01T00:00:00Z", ""),                     // inside the open-ended one
			spec("4420", "0.01", 1, 1, "2023-01-01T00:00:00Z", ""),                     // covers everything
			spec("4420", "0.01", 1, 1, "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"), // same start
		} {
			_, err := s.Create(ctx, sp)
			require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err), "%+v", sp)
			f := fieldsOf(t, err)
			require.Contains(t, f, "effective_from")
			require.Contains(t, f, "effective_to")
		}
		_, err = s.Create(ctx, spec("4420", "0.01", 1, 1, "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z"))
		require.NoError(t, err, "ends where the old one starts")

		// Updates are checked against the others, not against themselves.
		to := "2025-06-01T00:00:00Z"
		_, err = s.Patch(ctx, cur.ID, rates.Patch{EffectiveTo: json.RawMessage(`"` + to + `"`)})
		require.NoError(t, err)
		from := "2024-12-01T00:00:00Z"
		_, err = s.Patch(ctx, cur.ID, rates.Patch{EffectiveFrom: &from})
		require.Contains(t, fieldsOf(t, err), "effective_from")
		moved := "442"
		_, err = s.Patch(ctx, old.ID, rates.Patch{Prefix: &moved})
		require.Contains(t, fieldsOf(t, err), "effective_to", "moving into another prefix checks that prefix")
	})
}

func TestConcurrentOverlappingCreates(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, s *rates.Store) {
		// Different start instants, so the unique (prefix, effective_from)
		// backstop cannot decide: only the lock and the check can.
		const n = 8
		starts := []string{"2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01", "2025-08-01"}
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				_, errs[i] = s.Create(context.Background(), spec("4420", "0.01", 1, 1, starts[i]+"T00:00:00Z", ""))
			}(i)
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
				continue
			}
			require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err), "%v", err)
		}
		require.Equal(t, 1, ok, "exactly one of the overlapping creates wins")
		_, total, err := s.List(context.Background(), "4420", 10, 0)
		require.NoError(t, err)
		require.Equal(t, 1, total)
	})
}
