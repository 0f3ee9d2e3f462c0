package controlplane

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidHostname(t *testing.T) {
	for h, want := range map[string]bool{
		"acme.example.com":                true,
		"a.b":                             true,
		"localhost":                       true,
		"xn--bcher-kva.example":           true,
		"1password.com":                   true,
		"acme-corp.example.com":           true,
		"":                                false,
		"Acme.example.com":                false, // callers lower-case first
		"acme.example.com.":               false, // callers strip the root dot first
		"-acme.example.com":               false,
		"acme-.example.com":               false,
		"acme..example.com":               false,
		"acme.example.com:8080":           false,
		"http://acme.example.com":         false,
		"acme.example.com/path":           false,
		"ac me.example.com":               false,
		"10.0.0.1":                        false,
		"[::1]":                           false,
		strings.Repeat("a", 64) + ".com":  false,
		strings.Repeat("a.", 127) + "com": false, // 257 characters
	} {
		require.Equal(t, want, ValidHostname(h), "%q", h)
	}
}

func TestValidTimezone(t *testing.T) {
	for tz, want := range map[string]bool{
		"America/New_York": true, "Asia/Kolkata": true, "Australia/Lord_Howe": true, "UTC": true,
		"": false, "Local": false, "+05:30": false, "EST+5": false, "Mars/Olympus": false, "../../etc/passwd": false,
	} {
		require.Equal(t, want, ValidTimezone(tz), "%q", tz)
	}
}

func TestTextProblem(t *testing.T) {
	for s, want := range map[string]string{
		"": "", "Acme": "", "é😀\ufffd": "", "\x01\x7f": "",
		"a\x00b": ReasonNUL, "\x00\xff": ReasonNUL, "a\xffb": ReasonUTF8, "\xed\xa0\x80": ReasonUTF8, "\xc3": ReasonUTF8,
	} {
		require.Equal(t, want, TextProblem(s), "%q", s)
	}
}

func TestSpecValidationNamesEveryBadField(t *testing.T) {
	spec := NewTenantSpec()
	spec.Slug = "Bad Slug"
	spec.MaxExtensions = -1
	spec.Settings = json.RawMessage(`{}`)
	spec.Normalize(IsolationDatabase)
	err := spec.Validate()
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, Invalid, e.Code)
	require.Equal(t, []string{"domain", "max_extensions", "name", "settings", "slug"}, slices.Sorted(maps.Keys(e.Fields)))
}

func TestPatchApply(t *testing.T) {
	base := NewTenantSpec()
	base.Name, base.Slug, base.Domain = "A", "a", "a.example.com"
	cap := 7
	name := "B"
	got := TenantPatch{Name: &name, MaxExtensions: &cap}.Apply(base)
	want := base
	want.Name, want.MaxExtensions = "B", 7
	require.Equal(t, want, got)
}

// FuzzTenantSpec: no JSON a client can send makes validation panic, and
// whatever passes validation satisfies the catalog's own constraints.
func FuzzTenantSpec(f *testing.F) {
	f.Add(`{"name":"Acme Corp","slug":"acme-corp","domain":"acme.example.com","status":"active","timezone":"America/New_York","max_extensions":50,"settings":[]}`)
	f.Add(`{"name":"x","slug":"x","domain":"X.COM.","settings":[{"a":1}]}`)
	f.Add(`{"name":"\u0000","slug":"-","domain":"..","timezone":"Local","settings":"[]"}`)
	f.Fuzz(func(t *testing.T, body string) {
		spec := NewTenantSpec()
		if json.Unmarshal([]byte(body), &spec) != nil {
			return
		}
		spec.Normalize(IsolationSchema)
		if spec.Validate() != nil {
			return
		}
		require.True(t, slugPattern.MatchString(spec.Slug) && len(spec.Slug) <= 63)
		require.True(t, ValidHostname(spec.Domain))
		require.Equal(t, strings.ToLower(spec.Domain), spec.Domain)
		require.True(t, json.Valid(spec.Settings))
		require.True(t, spec.MaxExtensions >= 0 && spec.MaxExtensions <= 100000)
	})
}

// FuzzNormalizeHost: any Host header normalises without panicking to a
// lower-case host, and a valid hostname (the only kind a tenant domain can
// be) is its own normal form, without a port.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"acme.example.com", "ACME.Example.COM.:8080", "[::1]:8080", "[::1]", "127.0.0.1:80", "", ":", "a:b:c", "xn--bcher-kva.example", "acme.example.com..", "%2e", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		h := NormalizeHost(host)
		require.Equal(t, strings.ToLower(h), h)
		if ValidHostname(h) {
			require.Equal(t, h, NormalizeHost(h), "a valid hostname is its own normal form")
			require.NotContains(t, h, ":")
		}
	})
}

// An E.164 number must be possible for its country (libphonenumber's
// lengths), not only look like one; whether its range is assigned is not
// asked, so the fictional numbers of examples and new ranges pass.
func TestValidE164(t *testing.T) {
	for s, want := range map[string]bool{
		"+15551234567":    true, // fictional (555) but of NANP's length
		"+12025550123":    true,
		"+447700900123":   true, // Ofcom's range for drama
		"+442071838750":   true,
		"+33612345678":    true,
		"+8613800138000":  true,
		"+12":             false, // the shape of E.164, too short for +1
		"+4420":           false,
		"+1555":           false,
		"+2341234":        false,
		"+99912345":       false, // no such country code
		"+1555123456789":  false, // too long for +1
		"15551234567":     false,
		"+015551234567":   false,
		"+1 555 123 4567": false, // not normalised
	} {
		require.Equal(t, want, ValidE164(s), s)
	}
}

// FuzzNormalizeE164: whatever is typed, a normalised number is either valid
// E.164 or refused; it never keeps a separator.
func FuzzNormalizeE164(f *testing.F) {
	for _, s := range []string{"+1 (555) 123-4567", "+44 20 7183 8750", "5551234567", "+0123", "++15551234567", "+1.555.123.4567", "\t+15551234567\n", "+１５５５"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeE164(s)
		require.NotContains(t, n, " ")
		require.NotContains(t, n, "-")
		if ValidE164(n) {
			require.Regexp(t, `^\+[1-9][0-9]{1,14}$`, n)
			require.Equal(t, n, NormalizeE164(n))
		}
	})
}
