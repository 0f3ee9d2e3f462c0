package controlplane

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseIdempotencyKey(t *testing.T) {
	key, err := ParseIdempotencyKey(nil)
	require.NoError(t, err)
	require.Empty(t, key, "no header, no key")
	for _, ok := range []string{"a", "8e03978e-40d5-43e8-bc93-6894a57f9324", `"quoted key"`, "~ !", strings.Repeat("x", 255)} {
		key, err := ParseIdempotencyKey([]string{ok})
		require.NoError(t, err, ok)
		require.Equal(t, ok, key, "the key is taken as sent")
	}
	for name, values := range map[string][]string{
		"empty": {""}, "too long": {strings.Repeat("x", 256)}, "tab": {"a\tb"}, "DEL": {"a\x7f"},
		"not ASCII": {"clé"}, "NUL": {"a\x00"}, "twice": {"a", "a"},
	} {
		_, err := ParseIdempotencyKey(values)
		require.Equal(t, Invalid, ErrorCode(err), name)
		require.Contains(t, err.(*Error).Fields, IdempotencyKeyHeader, name)
	}
}

// The fingerprint is of the request as Normalize leaves it: what a create
// would store the same makes the same fingerprint; any field that differs
// makes another.
func TestFingerprint(t *testing.T) {
	base := func() TenantSpec {
		s := NewTenantSpec()
		s.Name, s.Slug, s.Domain = "Acme", "acme", "acme.example.com"
		s.Settings = json.RawMessage(`[{"a": 1, "b": [true, null]}, 2.50]`)
		return s
	}
	fp := func(s TenantSpec) [32]byte {
		s.Normalize(IsolationDatabase)
		return s.fingerprint()
	}
	want := fp(base())

	same := base()
	same.Name, same.Domain = "  Acme ", "ACME.Example.com."
	same.Settings = json.RawMessage("[ {\"b\":[true,null],\n \"a\":1}, 2.50 ]")
	same.Isolation = IsolationDatabase // the default, made explicit
	require.Equal(t, want, fp(same))

	for name, change := range map[string]func(*TenantSpec){
		"name":      func(s *TenantSpec) { s.Name = "Acme Inc" },
		"slug":      func(s *TenantSpec) { s.Slug = "acme-inc" },
		"domain":    func(s *TenantSpec) { s.Domain = "acme.example.org" },
		"status":    func(s *TenantSpec) { s.Status = StatusSuspended },
		"timezone":  func(s *TenantSpec) { s.Timezone = "Europe/Paris" },
		"cap":       func(s *TenantSpec) { s.MaxExtensions = 101 },
		"settings":  func(s *TenantSpec) { s.Settings = json.RawMessage(`[{"a": 2, "b": [true, null]}, 2.50]`) },
		"isolation": func(s *TenantSpec) { s.Isolation = IsolationSchema },
		// Fields are length-prefixed: moving a character from one to the
		// next is another request.
		"boundary": func(s *TenantSpec) { s.Name, s.Slug = "Acmea", "cme" },
	} {
		s := base()
		change(&s)
		require.NotEqual(t, want, fp(s), name)
	}
}
