package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

const testURL = "postgres://cp:s3cret@db.internal:5432/controlplane?sslmode=disable"

func TestDefaults(t *testing.T) {
	c, err := Load([]string{"DATABASE_URL=" + testURL}, nil)
	require.NoError(t, err)
	require.Equal(t, ":8080", c.ListenAddr)
	require.Equal(t, "database", c.TenantIsolation)
	require.Equal(t, "tenant_", c.TenantDBPrefix)
	require.Equal(t, Secret(testURL), c.TenantDatabaseURL, "the tenant server defaults to the catalog's")
	require.Empty(t, c.TenantPoolerURL, "no pooler unless asked: tenant traffic goes direct")
	require.Equal(t, 2*time.Minute, c.ProvisionTimeout)
	require.True(t, c.MigrateCatalog)

	require.Zero(t, c.TenantServerMaxConns, "derived from the server at start")
	require.Zero(t, c.TenantPoolsMax, "derived from the budget at start")

	require.Equal(t, 28, c.TenantQueueMax)

	_, err = Load([]string{"DATABASE_URL=" + testURL, "TENANT_QUEUE_MAX=-1"}, nil)
	require.ErrorContains(t, err, "TENANT_QUEUE_MAX: must be at least 0")
	_, err = Load([]string{"DATABASE_URL=" + testURL, "TENANT_SERVER_MAX_CONNS=-1"}, nil)
	require.ErrorContains(t, err, "TENANT_SERVER_MAX_CONNS: must be at least 1, or 0 to derive it")
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs, true)
	BindFlags(fs, false)
	require.NoError(t, fs.Parse([]string{"--listen", "127.0.0.1:9000", "--isolation", "schema"}))
	c, err := Load([]string{"DATABASE_URL=" + testURL, "LISTEN_ADDR=:7000", "TENANT_ISOLATION=database", "LOG_LEVEL=debug"}, fs)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9000", c.ListenAddr)
	require.Equal(t, "schema", c.TenantIsolation)
	require.Equal(t, "debug", c.LogLevel, "environment is kept where no flag is given")
}

func TestMetricsAddr(t *testing.T) {
	c, err := Load([]string{"DATABASE_URL=" + testURL}, nil)
	require.NoError(t, err)
	require.Empty(t, c.MetricsAddr, "no separate metrics listener unless asked")

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs, true)
	require.NoError(t, fs.Parse([]string{"--metrics-listen", "127.0.0.1:9091"}))
	c, err = Load([]string{"DATABASE_URL=" + testURL, "METRICS_ADDR=:9090"}, fs)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9091", c.MetricsAddr)

	for _, addr := range []string{"9090", "127.0.0.1", "127.0.0.1:", ":8080"} {
		_, err := Load([]string{"DATABASE_URL=" + testURL, "METRICS_ADDR=" + addr}, nil)
		require.Error(t, err, addr)
		require.True(t, strings.HasPrefix(err.Error(), "config: METRICS_ADDR: "), err.Error())
	}
	_, err = Load([]string{"DATABASE_URL=" + testURL, "LISTEN_ADDR=127.0.0.1:0", "METRICS_ADDR=127.0.0.1:0"}, nil)
	require.NoError(t, err, "port 0 twice is two free ports")
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := map[string][]string{
		"DATABASE_URL":           {},
		"TENANT_DATABASE_URL":    {"TENANT_DATABASE_URL=postgres://x:pw@h:notaport/db"},
		"TENANT_POOLER_URL":      {"TENANT_POOLER_URL=postgres://x:pw@h:notaport/db"},
		"LISTEN_ADDR":            {"LISTEN_ADDR=8080"},
		"METRICS_ADDR":           {"METRICS_ADDR=9090"},
		"TENANT_ISOLATION":       {"TENANT_ISOLATION=table"},
		"TENANT_DB_PREFIX":       {"TENANT_DB_PREFIX=Tenant-"},
		"PROVISION_TIMEOUT":      {"PROVISION_TIMEOUT=soon"},
		"TENANT_SPARE_DATABASES": {"TENANT_SPARE_DATABASES=-1"},
		"SHUTDOWN_TIMEOUT":       {"SHUTDOWN_TIMEOUT=-1s"},
		"MIGRATE_CATALOG":        {"MIGRATE_CATALOG=perhaps"},
		"LOG_LEVEL":              {"LOG_LEVEL=loud"},
		"LOG_FORMAT":             {"LOG_FORMAT=xml"},
		"ADMIN_TOKEN":            {"ADMIN_TOKEN=short"},
		"TRUSTED_PROXIES":        {"TRUSTED_PROXIES=10.0.0.0/8,proxy.internal"},
		"SERVER_SECRET_KEY":      {"SERVER_SECRET_KEY=s3cret"},
		"BACKUP_SCHEDULE":        {"BACKUP_SCHEDULE=10s"},
		"BACKUP_KEEP":            {"BACKUP_KEEP=0"},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			if name != "DATABASE_URL" {
				env = append(env, "DATABASE_URL="+testURL)
			}
			_, err := Load(env, nil)
			require.Error(t, err)
			msg := err.Error()
			require.True(t, strings.HasPrefix(msg, "config: "+name+": "), msg)
			require.NotContains(t, msg, "\n")
			require.NotContains(t, msg, "s3cret")
			require.NotContains(t, msg, "pw@")
		})
	}
}

func TestSecretsDoNotPrint(t *testing.T) {
	c, err := Load([]string{"DATABASE_URL=" + testURL, "ADMIN_TOKEN=0123456789abcdef-token", "TENANT_POOLER_URL=postgres://cp:s3cret@pgbouncer:6432/controlplane"}, nil)
	require.NoError(t, err)
	for _, s := range []string{c.DatabaseURL.String(), c.AdminToken.String(), c.TenantDatabaseURL.LogValue().String(), c.TenantPoolerURL.String(), c.TenantPoolerURL.LogValue().String()} {
		require.Equal(t, "****", s)
	}
	require.Equal(t, testURL, c.DatabaseURL.Value())
}

func TestTrustedProxiesAndLoopback(t *testing.T) {
	c, err := Load([]string{"DATABASE_URL=" + testURL, "TRUSTED_PROXIES=10.0.0.0/8, 192.168.1.7,::1"}, nil)
	require.NoError(t, err)
	ps, err := c.TrustedProxyPrefixes()
	require.NoError(t, err)
	require.Equal(t, "[10.0.0.0/8 192.168.1.7/32 ::1/128]", fmt.Sprint(ps))

	for addr, want := range map[string]bool{
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.1.2.3:80": false,
		"127.0.0.1:8080": true, "127.9.9.9:1": true, "[::1]:8080": true, "localhost:8080": true,
	} {
		c.ListenAddr = addr
		require.Equal(t, want, c.LoopbackListener(), addr)
	}
}

// SERVER_SECRET_KEY is 32 bytes in base64; anything else stops the start
// naming the variable, never the value.
func TestServerSecretKey(t *testing.T) {
	c, err := Load([]string{"DATABASE_URL=" + testURL}, nil)
	require.NoError(t, err)
	key, err := c.ServerKey()
	require.NoError(t, err)
	require.Nil(t, key, "unset: no key")

	good := "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
	c, err = Load([]string{"DATABASE_URL=" + testURL, "SERVER_SECRET_KEY=" + good}, nil)
	require.NoError(t, err)
	key, err = c.ServerKey()
	require.NoError(t, err)
	require.Len(t, key, 32)
	require.Equal(t, "****", c.ServerSecretKey.String())

	for _, v := range []string{
		"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ",                                 // 24 bytes
		"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ", // 48 bytes
		"abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", // hex: 48 bytes of base64
		"not base64 at all!",
	} {
		_, err := Load([]string{"DATABASE_URL=" + testURL, "SERVER_SECRET_KEY=" + v}, nil)
		require.Error(t, err, v)
		require.True(t, strings.HasPrefix(err.Error(), "config: SERVER_SECRET_KEY: must be 32 bytes in base64"), err.Error())
		require.NotContains(t, err.Error(), v)
	}
}

// A secret can come from a file (NAME_FILE, the Docker and Kubernetes
// convention): its content without the trailing newline; never both the
// variable and its file; an unreadable or empty file is an error naming
// the variable and never showing a secret.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	token := write("token", "0123456789abcdef0123\n")
	url := write("url", "postgres://cp:s3cret-pw@db.internal:5432/controlplane?sslmode=disable\n")
	c, err := Load([]string{"DATABASE_URL_FILE=" + url, "ADMIN_TOKEN_FILE=" + token}, nil)
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123", c.AdminToken.Value())
	require.Equal(t, "postgres://cp:s3cret-pw@db.internal:5432/controlplane?sslmode=disable", c.DatabaseURL.Value())
	require.Equal(t, c.DatabaseURL, c.TenantDatabaseURL, "the tenant server defaults to the catalog's, from the file too")

	_, err = Load([]string{"DATABASE_URL=postgres://x@h/db", "DATABASE_URL_FILE=" + url}, nil)
	require.ErrorContains(t, err, "DATABASE_URL_FILE: DATABASE_URL is set too")
	_, err = Load([]string{"DATABASE_URL=postgres://x@h/db", "ADMIN_TOKEN_FILE=" + filepath.Join(dir, "missing")}, nil)
	require.ErrorContains(t, err, "ADMIN_TOKEN_FILE")
	_, err = Load([]string{"DATABASE_URL=postgres://x@h/db", "ADMIN_TOKEN_FILE=" + write("empty", "\n")}, nil)
	require.ErrorContains(t, err, "is empty")
	_, err = Load([]string{"DATABASE_URL_FILE=" + url, "ADMIN_TOKEN_FILE=" + write("short", "short\n")}, nil)
	require.ErrorContains(t, err, "ADMIN_TOKEN")
	require.NotContains(t, err.Error(), "short", "the secret is not shown")
	require.NotContains(t, err.Error(), "s3cret-pw")
}
