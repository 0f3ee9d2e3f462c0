package cdrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
)

// TestCursorWhileCDRsArrive pages through CDRs while newer (and late,
// older) CDRs keep arriving: no page repeats or skips a CDR, newer ones
// never push rows into later pages, and late older ones show at the end.
func TestCursorWhileCDRsArrive(t *testing.T) {
	t.Parallel()
	bothModes(t, "UTC", func(t *testing.T, e *env) {
		ctx := context.Background()
		base := utc("2025-03-01T10:00:00Z")
		var batch []cdrs.Spec
		for i := 0; i < 25; i++ {
			// Groups of three share a start instant: the id breaks the tie,
			// also across page boundaries.
			batch = append(batch, missed(i, "+4420", base.Add(time.Duration(i/3)*time.Minute), 5))
		}
		_, err := e.cdrs.IngestBatch(ctx, batch)
		require.NoError(t, err)
		all, err := e.cdrs.List(ctx, cdrs.Query{Limit: 100})
		require.NoError(t, err)
		require.Len(t, all.Data, 25)
		require.Nil(t, all.NextCursor)

		var seen []int64
		q := cdrs.Query{Limit: 10}
		for page := 0; ; page++ {
			p, err := e.cdrs.List(ctx, q)
			require.NoError(t, err)
			for _, c := range p.Data {
				seen = append(seen, c.ID)
			}
			if page == 0 {
				// New calls arrive: later than everything, and one late CDR
				// of a call older than everything.
				for i := 0; i < 5; i++ {
					e.ingest(missed(100+i, "+4420", base.Add(time.Hour), 5))
				}
				e.ingest(missed(200, "+4420", base.Add(-time.Hour), 5))
			}
			if p.NextCursor == nil {
				break
			}
			q.Cursor = *p.NextCursor
		}
		want := []int64{}
		for _, c := range all.Data {
			want = append(want, c.ID)
		}
		late, err := e.cdrs.Get(ctx, uuid(200))
		require.NoError(t, err)
		require.Equal(t, append(want, late.ID), seen)

		// Newest first, ties by id.
		for i := 1; i < len(all.Data); i++ {
			a, b := all.Data[i-1], all.Data[i]
			require.True(t, a.StartAt.After(b.StartAt) || a.StartAt.Equal(b.StartAt) && a.ID > b.ID)
		}

		for _, bad := range []string{"nope", "MjAyNQ", "bm90LWEtdGltZS8x"} {
			_, err = e.cdrs.List(ctx, cdrs.Query{Limit: 10, Cursor: bad})
			require.Contains(t, fieldsOf(t, err), "cursor", bad)
		}
	})
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationDatabase, "America/New_York")
	ctx := context.Background()
	in := answered(1, "+442071838750", utc("2025-11-02T03:59:59Z"), 1, 10) // Nov 1, 23:59:59 EDT
	in.Src = "+15551230000"
	e.ingest(in)
	midnight := missed(2, "+33123", utc("2025-11-02T04:00:00Z"), 5) // Nov 2, 00:00:00 EDT
	midnight.Direction = "inbound"
	e.ingest(midnight)
	e.ingest(missed(3, "+4420_5%", utc("2025-11-03T04:59:59Z"), 5))          // Nov 2, 23:59:59 EST
	e.ingest(answered(4, "100_%", utc("2025-11-03T05:00:00Z"), 1, 1))        // Nov 3, 00:00 EST
	e.ingest(answered(5, "+4420", utc("2025-11-03T05:00:00.000001Z"), 1, 1)) // a microsecond later
	uuids := func(q cdrs.Query) []string {
		t.Helper()
		q.Limit = 50
		p, err := e.cdrs.List(ctx, q)
		require.NoError(t, err)
		var out []string
		for _, c := range p.Data {
			out = append(out, c.UUID[len(c.UUID)-1:])
		}
		return out
	}
	require.Equal(t, []string{"5", "4", "3", "2", "1"}, uuids(cdrs.Query{}))
	require.Equal(t, []string{"3", "2"}, uuids(cdrs.Query{From: "2025-11-02", To: "2025-11-02"}), "a local date is the tenant's whole local day (25 h here)")
	require.Equal(t, []string{"1"}, uuids(cdrs.Query{To: "2025-11-01"}))
	require.Equal(t, []string{"5", "4"}, uuids(cdrs.Query{From: "2025-11-03"}))
	require.Equal(t, []string{"4", "3"}, uuids(cdrs.Query{From: "2025-11-03T04:00:00Z", To: "2025-11-03T05:00:00.000001Z"}), "instants are half-open")
	require.Equal(t, []string{"2"}, uuids(cdrs.Query{Direction: "inbound"}))
	require.Equal(t, []string{"5", "4", "1"}, uuids(cdrs.Query{Disposition: "ANSWERED"}))
	require.Equal(t, []string{"5", "3", "1"}, uuids(cdrs.Query{Dst: "+4420"}))
	require.Equal(t, []string{"3"}, uuids(cdrs.Query{Dst: "+4420_"}), "LIKE wildcards are literal")
	require.Equal(t, []string{"4"}, uuids(cdrs.Query{Dst: "100_%"}))
	require.Equal(t, []string{"1"}, uuids(cdrs.Query{Src: "+1555"}))
	require.Empty(t, uuids(cdrs.Query{ExtensionID: 1}))

	// Changing the timezone moves the local days, not the calls.
	tokyo := e.inTZ("Asia/Tokyo")
	p, err := tokyo.List(ctx, cdrs.Query{From: "2025-11-02", To: "2025-11-02", Limit: 50})
	require.NoError(t, err)
	require.Len(t, p.Data, 2, "Tokyo's Nov 2 is 2025-11-01T15:00Z to 2025-11-02T15:00Z")

	for _, tc := range []struct {
		q     cdrs.Query
		field string
	}{
		{cdrs.Query{From: "yesterday"}, "from"},
		{cdrs.Query{To: "2025-13-01"}, "to"},
		{cdrs.Query{To: "2025-11-01T00:00:00"}, "to"},
		{cdrs.Query{From: "0000-01-01"}, "from"},
		{cdrs.Query{To: "9999-12-31"}, "to"},
		{cdrs.Query{Direction: "up"}, "direction"},
		{cdrs.Query{Src: "1\x00"}, "src"},
		{cdrs.Query{Disposition: "no answer"}, "disposition"},
	} {
		tc.q.Limit = 10
		_, err := e.cdrs.List(ctx, tc.q)
		require.Contains(t, fieldsOf(t, err), tc.field, "%+v", tc.q)
	}
}
