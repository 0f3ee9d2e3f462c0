package rates_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

const header = "prefix,rate_per_minute,connect_fee,min_seconds,increment_seconds,effective_from,effective_to\n"

// deck is a rate deck of n prefixes 1000..; row i is line i+2.
func deck(n int) string {
	var b strings.Builder
	b.WriteString(header)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%d,0.%05d,,30,6,2025-01-01T00:00:00Z,\n", 1000+i, i%100000)
	}
	return b.String()
}

func TestImportThousandsOfRows(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, s *rates.Store) {
		ctx := context.Background()
		n, err := s.Import(ctx, strings.NewReader(deck(5000)))
		require.NoError(t, err)
		require.Equal(t, 5000, n)
		list, total, err := s.List(ctx, "4999", 10, 0)
		require.NoError(t, err)
		require.Equal(t, 1, total)
		r := list[0]
		require.Equal(t, "0.03999", r.RatePerMinute.StringFixed(5))
		require.Equal(t, "0.00000", r.ConnectFee.StringFixed(5), "an empty connect_fee is 0")
		require.Nil(t, r.EffectiveTo, "an empty effective_to is open-ended")
		require.Equal(t, 30, r.MinSeconds)

		// Importing the same deck again overlaps every row: nothing more is stored.
		_, err = s.Import(ctx, strings.NewReader(deck(5000)))
		require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err))
		require.Contains(t, fieldsOf(t, err), "row 2: effective_from")
		require.Contains(t, err.Error(), "5000 rows")
		_, total, err = s.List(ctx, "", 1, 0)
		require.NoError(t, err)
		require.Equal(t, 5000, total)
	})
}

func TestImportErrors(t *testing.T) {
	t.Parallel()
	f := tenanttest.New(t, controlplane.IsolationSchema, 1, router.Config{})
	db, tn := f.Tenant(t, 0)
	s := &rates.Store{DB: db, Tenant: tn}
	ctx := context.Background()
	_, err := s.Create(ctx, spec("4420", "0.012", 30, 6, "2025-01-01T00:00:00Z", ""))
	require.NoError(t, err)

	// Row 17 (the 16th rate) has a bad prefix: the whole file is refused.
	lines := strings.Split(strings.TrimSuffix(deck(30), "\n"), "\n")
	lines[16] = "44x,0.01,,30,6,2025-01-01T00:00:00Z,"
	lines[20] = "1019,0.01,,0,6,2025-01-01T00:00:00Z,2024-01-01T00:00:00Z"
	_, err = s.Import(ctx, strings.NewReader(strings.Join(lines, "\n")))
	require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err))
	fields := fieldsOf(t, err)
	require.Contains(t, fields, "row 17: prefix")
	require.Contains(t, fields, "row 21: min_seconds")
	require.Contains(t, fields, "row 21: effective_to")
	require.Len(t, fields, 3)

	cases := []struct {
		name, csv, field string
		code             controlplane.Code
	}{
		{"overlap within the file", header + "33,0.01,,1,1,2025-01-01T00:00:00Z,\n34,0.01,,1,1,2025-01-01T00:00:00Z,\n33,0.02,,1,1,2026-01-01T00:00:00Z,\n", "row 4: effective_from", controlplane.Invalid},
		{"overlap with a stored rate", header + "33,0.01,,1,1,2025-01-01T00:00:00Z,\n4420,0.01,,1,1,2024-01-01T00:00:00Z,2025-01-01T00:00:01Z\n", "row 3: effective_from", controlplane.Invalid},
		{"a cell too many", header + "33,0,01,,1,1,2025-01-01T00:00:00Z,\n", "row 2", controlplane.Invalid},
		{"money with a comma", header + "33,\"0,01\",,1,1,2025-01-01T00:00:00Z,\n", "row 2: rate_per_minute", controlplane.Invalid},
		{"float-looking integer", header + "33,0.01,,1.5,1,2025-01-01T00:00:00Z,\n", "row 2: min_seconds", controlplane.Invalid},
		{"missing rate", header + "33,,,1,1,2025-01-01T00:00:00Z,\n", "row 2: rate_per_minute", controlplane.Invalid},
		{"unknown column", "prefix,rate,min_seconds,increment_seconds,effective_from\n", "header", controlplane.Invalid},
		{"missing column", "prefix,rate_per_minute,min_seconds,effective_from\n33,0.01,1,2025-01-01T00:00:00Z\n", "header", controlplane.Invalid},
		{"column twice", "prefix,prefix,rate_per_minute,min_seconds,increment_seconds,effective_from\n", "header", controlplane.Invalid},
		{"header only", header, "rows", controlplane.Invalid},
		{"bare quote", header + "33,0.01,,1,1,2025\"-01-01,\n", "row 2", controlplane.BadRequest},
	}
	for _, tc := range cases {
		_, err := s.Import(ctx, strings.NewReader(tc.csv))
		require.Equal(t, tc.code, controlplane.ErrorCode(err), "%s: %v", tc.name, err)
		require.Contains(t, fieldsOf(t, err), tc.field, tc.name)
	}
	_, err = s.Import(ctx, strings.NewReader(""))
	require.Equal(t, controlplane.BadRequest, controlplane.ErrorCode(err))

	// NUL and invalid UTF-8 are named as such, whatever the column.
	for csv, want := range map[string]map[string]string{
		header + "33\x00,0.01,,1,1,2025-01-01T00:00:00Z,\n":                                         {"row 2: prefix": controlplane.ReasonNUL},
		header + "33,0.01,,1,1,2025-01-01T00:00:00Z\xff,\n":                                         {"row 2: effective_from": controlplane.ReasonUTF8},
		header + "33,0.01,,1,1,2025-01-01T00:00:00Z,\n34,0.01\xc3,,1,1,2025-01-01T00:00:00Z,\x00\n": {"row 3: rate_per_minute": controlplane.ReasonUTF8, "row 3: effective_to": controlplane.ReasonNUL},
	} {
		_, err := s.Import(ctx, strings.NewReader(csv))
		require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err), "%q", csv)
		require.Equal(t, want, fieldsOf(t, err), "%q", csv)
	}

	// Columns in any order, a spreadsheet's BOM, CRLF line ends, optional
	// columns left out.
	n, err := s.Import(ctx, strings.NewReader("\ufeffeffective_from,prefix,increment_seconds,min_seconds,rate_per_minute\r\n2025-01-01T00:00:00+01:00,33,1,1,\"0.020\"\r\n"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	list, total, err := s.List(ctx, "33", 10, 0)
	require.NoError(t, err)
	require.Equal(t, 1, total, "only the last import stored anything")
	require.True(t, list[0].EffectiveFrom.Equal(time.Date(2024, 12, 31, 23, 0, 0, 0, time.UTC)))
}
