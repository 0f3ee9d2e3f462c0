package cdrs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

func TestRerate(t *testing.T) {
	t.Parallel()
	bothModes(t, "America/New_York", func(t *testing.T, e *env) {
		ctx := context.Background()
		// More than one batch of calls on 2025-03-01 (New York), none rated
		// yet, one missed, and one on the next day.
		base := utc("2025-03-01T05:00:00Z") // 00:00 EST
		n := cdrs.RerateBatch + 5
		var batch []cdrs.Spec
		for i := 0; i < n; i++ {
			s := answered(i, "+442071838750", base.Add(time.Duration(i)*time.Minute), 3, 47)
			if i == 7 {
				s = missed(i, "+442071838750", base.Add(time.Duration(i)*time.Minute), 5)
			}
			batch = append(batch, s)
			if len(batch) == cdrs.MaxBatch {
				_, err := e.cdrs.IngestBatch(ctx, batch)
				require.NoError(t, err)
				batch = nil
			}
		}
		_, err := e.cdrs.IngestBatch(ctx, append(batch, answered(5000, "+442071838750", utc("2025-03-02T05:00:00Z"), 3, 47)))
		require.NoError(t, err)
		c, err := e.cdrs.Get(ctx, uuid(0))
		require.NoError(t, err)
		require.Equal(t, cdrs.NoRate, *c.UnratedReason)

		_, _, london := e.worked()
		got, err := e.cdrs.Rerate(ctx, "2025-03-01", "2025-03-01")
		require.NoError(t, err)
		require.Equal(t, cdrs.Rerating{
			From: utc("2025-03-01T05:00:00Z"), To: utc("2025-03-02T05:00:00Z"),
			Examined: n, Changed: n - 1, Rated: n - 1, Unrated: 1,
		}, *got)
		for _, k := range []int{0, cdrs.RerateBatch + 4} {
			c, err = e.cdrs.Get(ctx, uuid(k))
			require.NoError(t, err)
			require.Equal(t, "0.0246", c.Cost.StringFixed(4))
			require.Equal(t, london, *c.RateID)
			require.Nil(t, c.UnratedReason)
		}
		c, err = e.cdrs.Get(ctx, uuid(7))
		require.NoError(t, err)
		require.Equal(t, cdrs.NotAnswered, *c.UnratedReason, "a missed call stays unrated")
		c, err = e.cdrs.Get(ctx, uuid(5000))
		require.NoError(t, err)
		require.Nil(t, c.Cost, "outside the period: untouched")

		// Nothing changed since: nothing is written.
		got, err = e.cdrs.Rerate(ctx, "2025-03-01", "2025-03-01")
		require.NoError(t, err)
		require.Zero(t, got.Changed)

		// A price change, then a re-rate of an instant range.
		rpm := rates.ParseMoney("0.0060")
		_, err = e.rates.Patch(ctx, london, rates.Patch{RatePerMinute: &rpm})
		require.NoError(t, err)
		got, err = e.cdrs.Rerate(ctx, "2025-03-01T05:00:00Z", "2025-03-01T05:10:00Z")
		require.NoError(t, err)
		require.Equal(t, 10, got.Examined)
		require.Equal(t, 9, got.Changed, "the missed call keeps its reason")
		c, err = e.cdrs.Get(ctx, uuid(0))
		require.NoError(t, err)
		require.Equal(t, "0.0198", c.Cost.StringFixed(4)) // 0.0150 + 48/60 × 0.0060
		c, err = e.cdrs.Get(ctx, uuid(10))
		require.NoError(t, err)
		require.Equal(t, "0.0246", c.Cost.StringFixed(4), "after the range: not re-rated")

		for _, tc := range []struct{ from, to, field string }{
			{"", "2025-03-01", "from"},
			{"2025-03-01", "", "to"},
			{"2025-03-02", "2025-03-01", "to"},
			{"soon", "2025-03-01", "from"},
		} {
			_, err := e.cdrs.Rerate(ctx, tc.from, tc.to)
			require.Contains(t, fieldsOf(t, err), tc.field, "%+v", tc)
		}
		out, err := json.Marshal(got)
		require.NoError(t, err)
		require.Contains(t, string(out), `"examined":10`)
	})
}
