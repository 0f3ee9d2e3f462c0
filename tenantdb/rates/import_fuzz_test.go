package rates

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// FuzzReadCSV: no rate deck, however broken, makes the import panic or fail
// other than with a client error; what it accepts obeys every rate rule.
func FuzzReadCSV(f *testing.F) {
	header := "prefix,rate_per_minute,connect_fee,min_seconds,increment_seconds,effective_from,effective_to\n"
	for _, s := range []string{
		header + "44,0.0300,0.0150,30,6,2024-01-01T00:00:00Z,\n",
		header + "4420,0.012,,30,6,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z\n4420,0.01,,60,60,2025-06-01T00:00:00Z,\n",
		"\ufeff" + header + "1,1e3,0,1,1,2025-01-01T00:00:00Z,\r\n",
		header + "\"44,0.03\n", "prefix\n", "", "a,b,a\n1,2,3\n", header + "-1,NaN,Infinity,0,-5,yesterday,\n",
		header + "44,0.03,0,30,6,2025-01-01T00:00:00Z,2024-01-01T00:00:00Z\n",
		header + "44\x00,0.03,,30,6,2025-01-01T00:00:00Z,\n", header + "44,0.03\xff,,30,6,2025-01-01T00:00:00Z,\xed\xa0\x80\n",
		"prefix\x00,rate_per_minute\n",
	} {
		f.Add([]byte(s))
	}
	prefix := regexp.MustCompile(`^[0-9]{1,15}$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := readCSV(bytes.NewReader(data))
		if err == nil {
			err = overlapsInFile(rows)
		}
		if err != nil {
			var de *controlplane.Error
			require.True(t, errors.As(err, &de), "not a domain error: %v", err)
			require.Contains(t, []controlplane.Code{controlplane.Invalid, controlplane.BadRequest}, de.Code, "%v", err)
			return
		}
		for _, r := range rows {
			// Every text the import keeps is text PostgreSQL can store.
			require.Empty(t, controlplane.TextProblem(r.Prefix))
			require.Regexp(t, prefix, r.Prefix)
			require.False(t, r.RatePerMinute.IsNegative())
			require.False(t, r.ConnectFee.IsNegative())
			require.GreaterOrEqual(t, r.MinSeconds, 1)
			require.GreaterOrEqual(t, r.IncrementSeconds, 1)
			if r.EffectiveTo != nil {
				require.True(t, r.EffectiveTo.After(r.EffectiveFrom))
			}
		}
	})
}
