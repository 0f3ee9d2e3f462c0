package controlplane

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The spec's rules name their fields; capacity is required, from 1 to
// 1,000,000.
func TestServerSpecValidation(t *testing.T) {
	capacity := func(n int) *int { return &n }
	for _, tc := range []struct {
		spec   ServerSpec
		fields map[string]string
	}{
		{ServerSpec{Name: "pg-b", Capacity: capacity(500), Status: ServerActive}, nil},
		{ServerSpec{Name: "", Capacity: capacity(500), Status: ServerActive}, map[string]string{"name": "is required"}},
		{ServerSpec{Name: "PG_B", Capacity: capacity(500), Status: ServerActive}, map[string]string{"name": "must be lower-case letters and digits in words joined by single hyphens, e.g. acme-corp"}},
		{ServerSpec{Name: "pg-b", Status: ServerActive}, map[string]string{"capacity": "is required"}},
		{ServerSpec{Name: "pg-b", Capacity: capacity(0), Status: ServerActive}, map[string]string{"capacity": "must be at least 1"}},
		{ServerSpec{Name: "pg-b", Capacity: capacity(1_000_001), Status: "gone"}, map[string]string{"capacity": "must be at most 1000000", "status": "must be one of: active, draining, disabled"}},
	} {
		err := ValidateStruct(&tc.spec)
		if tc.fields == nil {
			require.NoError(t, err)
			continue
		}
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, tc.fields, e.Fields)
	}
}
