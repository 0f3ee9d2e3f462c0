package controlplane

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A server's URL is stored without its password, whichever way the
// password came, and put back together only by WithPassword.
func TestParseServerURL(t *testing.T) {
	for _, tc := range []struct {
		raw, redacted, password string
	}{
		{"postgres://cp@10.0.0.2:5432/postgres?sslmode=require", "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", ""},
		{"postgres://cp:s3cr%40t@10.0.0.2:5432/postgres?sslmode=require", "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", "s3cr@t"},
		{"postgresql://cp@pg-b.internal/postgres?password=p%26w&sslmode=verify-full", "postgresql://cp@pg-b.internal/postgres?sslmode=verify-full", "p&w"},
		{"POSTGRES://cp:pw@[::1]:6543", "postgres://cp@[::1]:6543", "pw"},
		{"postgres://cp@h1:5432,h2:5433/postgres?target_session_attrs=read-write", "postgres://cp@h1:5432,h2:5433/postgres?target_session_attrs=read-write", ""},
		{"postgres:///postgres?host=/var/run/postgresql&user=cp", "postgres:///postgres?host=%2Fvar%2Frun%2Fpostgresql&user=cp", ""},
		{"postgres://h/?application_name=cp&connect_timeout=5", "postgres://h/?application_name=cp&connect_timeout=5", ""},
	} {
		u, err := ParseServerURL(tc.raw)
		require.NoError(t, err, tc.raw)
		require.Equal(t, tc.redacted, u.Redacted, tc.raw)
		require.Equal(t, tc.password, u.Password, tc.raw)
		if tc.password != "" {
			require.NotContains(t, u.Redacted, tc.password)
		}
		full, err := u.WithPassword()
		require.NoError(t, err)
		again, err := ParseServerURL(full)
		require.NoError(t, err, "the full URL parses back")
		require.Equal(t, u, again)
	}
}

// Every bad URL is 422 naming url, and no reason echoes the URL or its
// password.
func TestParseServerURLRefuses(t *testing.T) {
	for raw, reason := range map[string]string{
		"":                                                        "is required",
		"host=10.0.0.2 user=cp password=s3cr":                     "must be a postgres:// or postgresql:// URL",
		"mysql://cp:s3cr@h/db":                                    "must be a postgres:// or postgresql:// URL",
		"postgres://cp:s3cr@h:notaport/db":                        "is not a valid URL",
		"postgres://cp:s3cr@h:70000/db":                           "port must be from 1 to 65535",
		"postgres://cp:s3cr@/db":                                  "must name a host",
		"postgres://cp:s3cr@h/db/more":                            "at most a database name",
		"postgres://cp:s3cr@h/db#frag":                            "must not have a #fragment",
		"postgres://cp:s3cr@h/db?sslmode=fast":                    "parameter sslmode must be one of",
		"postgres://cp:s3cr@h/db?search_path=x":                   `unknown parameter "search_path"`,
		"postgres://cp:s3cr@h/db?sslpassword=s3cr":                `unknown parameter "sslpassword"`,
		"postgres://cp:s3cr@h/db?password=s3cr":                   "has a password twice",
		"postgres://:s3cr@h/db":                                   "has a password but no user",
		"postgres://cp:s3cr@h/db?sslmode=require&sslmode=disable": "more than once",
		"postgres://cp:s3cr@h/db?connect_timeout=-1":              "parameter connect_timeout must be",
		"postgres://cp:s3cr@h%20x/db":                             "is not a valid URL",
		"postgres://cp:s3cr@h x/db":                               "must not contain spaces",
		"postgres://cp:s3cr@h/db\x00":                             ReasonNUL,
		"postgres://cp:s3cr@h!/db":                                "host must be a host name or an IP address",
		"postgres://cp:s3cr@h/" + strings.Repeat("d", 64):         "database name must be at most 63 bytes",
	} {
		_, err := ParseServerURL(raw)
		require.Error(t, err, raw)
		var e *Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, Invalid, e.Code, raw)
		require.Contains(t, e.Fields["url"], reason, raw)
		require.Len(t, e.Fields, 1)
		require.NotContains(t, e.Error(), "s3cr", raw)
	}
}

// TENANT_DATABASE_URL may be libpq's key=value form; the default server
// is registered as the same settings in a URL, without secrets.
func TestRedactServerURL(t *testing.T) {
	for conn, want := range map[string]ServerURL{
		"postgres://cp:pw@db:5432/controlplane?sslmode=disable&pool_max_conns=8":     {Redacted: "postgres://cp@db:5432/controlplane?pool_max_conns=8&sslmode=disable", Password: "pw"},
		"postgres://cp@db/controlplane":                                              {Redacted: "postgres://cp@db/controlplane"},
		"host=db port=5433 user=cp password='hunter''2' dbname=cp sslmode=require":   {},
		`host=db port = 5433 user=cp password='a \'b\' c' dbname=cp sslmode=require`: {Redacted: "postgres://cp@db:5433/cp?sslmode=require", Password: "a 'b' c"},
		"host=/var/run/postgresql user=cp dbname=cp":                                 {Redacted: "postgres://cp@/cp?host=%2Fvar%2Frun%2Fpostgresql"},
		"host=h1,h2 port=5432,5433 user=cp sslpassword=x":                            {Redacted: "postgres://cp@?host=h1%2Ch2&port=5432%2C5433"},
	} {
		got, err := RedactServerURL(conn)
		if want == (ServerURL{}) {
			require.Error(t, err, conn) // '' is not libpq's quote escape
			require.NotContains(t, err.Error(), "hunter")
			continue
		}
		require.NoError(t, err, conn)
		require.Equal(t, want, got, conn)
	}
}

// A sealed password opens with its key and server only; a wrong key, a
// missing one, another server's name or a damaged row fail with an error
// that names the server and never holds the password.
func TestSealPassword(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealed, err := SealPassword(key, "pg-b", "s3cret password")
	require.NoError(t, err)
	require.False(t, bytes.Contains(sealed, []byte("s3cret")))
	again, err := SealPassword(key, "pg-b", "s3cret password")
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "a fresh nonce each time")

	pw, err := OpenPassword(key, "pg-b", sealed)
	require.NoError(t, err)
	require.Equal(t, "s3cret password", pw)

	other := make([]byte, 32)
	_, _ = rand.Read(other)
	damaged := bytes.Clone(sealed)
	damaged[len(damaged)-1] ^= 1
	for name, open := range map[string]func() (string, error){
		"wrong key":      func() (string, error) { return OpenPassword(other, "pg-b", sealed) },
		"other server":   func() (string, error) { return OpenPassword(key, "pg-c", sealed) },
		"damaged":        func() (string, error) { return OpenPassword(key, "pg-b", damaged) },
		"truncated":      func() (string, error) { return OpenPassword(key, "pg-b", sealed[:10]) },
		"no key":         func() (string, error) { return OpenPassword(nil, "pg-b", sealed) },
		"short key":      func() (string, error) { return OpenPassword(key[:16], "pg-b", sealed) },
		"unknown layout": func() (string, error) { return OpenPassword(key, "pg-b", append([]byte{9}, sealed[1:]...)) },
	} {
		pw, err := open()
		require.Error(t, err, name)
		require.Empty(t, pw, name)
		require.NotContains(t, err.Error(), "s3cret", name)
	}
	_, err = SealPassword(nil, "pg-b", "x")
	require.ErrorIs(t, err, ErrNoServerKey)
}
