// Package config is the control plane's configuration: one typed struct,
// its defaults, reading it from the environment and command-line flags, and
// validating it before anything starts. Nothing else reads the environment
// but serve, for the Go runtime's own GOGC (it keeps the runtime's meaning).
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/pflag"
)

// Config is everything the control plane can be told. Flags override
// environment variables, which override the defaults in the tags.
type Config struct {
	// DatabaseURL is the catalog database (tenants, identity). Required.
	DatabaseURL Secret `env:"DATABASE_URL" help:"catalog database URL (required)"`
	// ListenAddr is the HTTP listen address of serve.
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080" help:"HTTP listen address" scope:"serve"`
	// MetricsAddr, when set, is a second listen address that serves only
	// /metrics, without the operator token (who may reach it is a matter
	// for the network), and the main listener then serves no /metrics at
	// all. Empty: /metrics is on the main listener, on admin hosts only.
	MetricsAddr string `env:"METRICS_ADDR" help:"a second listen address serving only /metrics, without token; empty: /metrics on LISTEN_ADDR, admin hosts only" scope:"serve"`
	// TenantDatabaseURL is the server tenant databases are created on, and
	// the database schema-mode tenants live in. Defaults to DatabaseURL.
	TenantDatabaseURL Secret `env:"TENANT_DATABASE_URL" help:"the default tenant server (default: DATABASE_URL)"`
	// TenantPoolerURL, when set, is a transaction pooler (PgBouncer,
	// pool_mode = transaction) in front of the tenant server, with the same
	// database names and roles. Tenant request traffic (the router) goes
	// through it; provisioning, migrations, version reads, the reconciler
	// and the budget's sizing keep using TenantDatabaseURL directly, as they
	// need session state (locks, search_path, role) the pooler cannot keep.
	// Empty: tenant traffic goes direct too.
	TenantPoolerURL Secret `env:"TENANT_POOLER_URL" help:"a transaction pooler (PgBouncer) in front of the default tenant server, for tenant traffic only; empty: direct" scope:"serve"`
	// TenantIsolation is the default isolation of new tenants.
	TenantIsolation string `env:"TENANT_ISOLATION" envDefault:"database" help:"isolation of new tenants: database or schema"`
	// TenantDBPrefix prefixes tenant database/schema names (prefix + id).
	// Two catalogs sharing a tenant server need different prefixes.
	TenantDBPrefix string `env:"TENANT_DB_PREFIX" envDefault:"tenant_" help:"prefix of tenant database and schema names (prefix + id)"`
	// AdminHosts serve the operator API (comma-separated, normalised like a
	// Host header); "*" allows any host that is not a tenant's domain.
	AdminHosts []string `env:"ADMIN_HOSTS" envDefault:"localhost,127.0.0.1,::1" envSeparator:"," help:"hosts that serve the operator API, comma-separated; * for any host that is no tenant's" scope:"serve"`
	// TenantPoolsMax bounds the tenant databases with a pool at once (a
	// pool is a few KB; its connections are counted by the budget, not
	// here). 0 (the default): 4 times the budget.
	TenantPoolsMax int `env:"TENANT_POOLS_MAX" envDefault:"0" help:"tenant databases with a pool at once; 0: 4 times the connection budget" scope:"serve"`
	// TenantPoolMaxConns is the most connections one tenant database's
	// pool opens, and so the most requests of a tenant that run at once.
	TenantPoolMaxConns int `env:"TENANT_POOL_MAX_CONNS" envDefault:"4" help:"connections of one tenant database's pool: its requests that run at once" scope:"serve"`
	// TenantPoolIdleTimeout closes a tenant database's pool unused that long.
	TenantPoolIdleTimeout time.Duration `env:"TENANT_POOL_IDLE_TIMEOUT" envDefault:"5m" help:"close a tenant database's pool unused this long" scope:"serve"`
	// TenantSchemaPoolConns is the size of the pool schema tenants share.
	TenantSchemaPoolConns int `env:"TENANT_SCHEMA_POOL_CONNS" envDefault:"20" help:"connections schema-mode tenants share" scope:"serve"`
	// TenantServerMaxConns caps all routed connections to the tenant server.
	// 0 (the default): derived from the server when serve starts
	// (max_connections less reserved slots, connections open then, a
	// margin and serve's other pools; router.SizeFromServer).
	TenantServerMaxConns int `env:"TENANT_SERVER_MAX_CONNS" envDefault:"0" help:"connection budget on a tenant server; 0: sized from its max_connections at start" scope:"serve"`
	// TenantAcquireTimeout is how long a request waits for a connection slot
	// when the budget is spent, before it gets 503.
	TenantAcquireTimeout time.Duration `env:"TENANT_ACQUIRE_TIMEOUT" envDefault:"5s" help:"how long a request waits for a connection when the budget is spent, then 503" scope:"serve"`
	// TenantQueueMax is how many more requests of one tenant may wait while
	// as many as it may run at once are running; beyond it: 429.
	TenantQueueMax int `env:"TENANT_QUEUE_MAX" envDefault:"28" help:"requests of one tenant that may wait beyond those running; more: 429" scope:"serve"`
	// AdminToken guards the operator API (and may act for any tenant). Unset
	// is allowed only when serve listens on a loopback address.
	AdminToken Secret `env:"ADMIN_TOKEN" help:"bearer token of the operator API; unset only on a loopback LISTEN_ADDR (development mode)" scope:"serve"`
	// TenantRoleSecret derives the passwords of tenant database roles
	// (HMAC). Unset: a random secret generated once and kept in the catalog
	// database.
	TenantRoleSecret Secret `env:"TENANT_ROLE_SECRET" help:"derives tenant database roles' passwords; unset: one generated and kept in the catalog"`
	// ServerSecretKey seals the passwords of registered tenant servers in
	// the catalog (AES-256-GCM): 32 bytes, base64-encoded (openssl rand
	// -base64 32). Unset: a server whose URL carries a password cannot be
	// registered (its password belongs in a pgpass file instead), and the
	// default server's credentials stay in TENANT_DATABASE_URL only.
	ServerSecretKey Secret `env:"SERVER_SECRET_KEY" help:"seals registered tenant servers' passwords (32 bytes, base64)"`
	// TrustedProxies are the CIDRs (or IPs) of reverse proxies whose
	// X-Forwarded-For and X-Forwarded-Host headers are honoured.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:"," help:"CIDRs of proxies whose X-Forwarded-For/-Host are honoured, comma-separated" scope:"serve"`
	// MigrateCatalog runs the catalog migrations when serve starts.
	MigrateCatalog bool `env:"MIGRATE_CATALOG" envDefault:"true" help:"migrate the catalog when serve starts" scope:"serve"`
	// TenantSpareDatabases is how many spare tenant databases serve keeps
	// ready (made in the background) for creates in database mode to claim;
	// 0 turns spares off.
	TenantSpareDatabases int `env:"TENANT_SPARE_DATABASES" envDefault:"2" help:"spare tenant databases kept ready for creates; 0: none" scope:"serve"`
	// ReconcileInterval is how often serve repairs what crashes and
	// outages left (tenants pending or deleting, DID index intents,
	// half-built templates), in one replica at a time.
	ReconcileInterval time.Duration `env:"RECONCILE_INTERVAL" envDefault:"30s" help:"how often the reconciler repairs what crashes and outages left" scope:"serve"`
	// BackupDir is where tenant backups (pg_dump archives) are written,
	// one folder per tenant.
	BackupDir string `env:"BACKUP_DIR" envDefault:".data/backups" help:"folder of tenant backups"`
	// TenantDeleteGrace is how long a deleted tenant is kept (served to
	// nobody, undeletable) before the reconciler purges it.
	TenantDeleteGrace time.Duration `env:"TENANT_DELETE_GRACE" envDefault:"72h" help:"how long a deleted tenant is kept, undeletable, before it is purged"`
	// MoveCutoverTimeout bounds the pause of an online move's cutover (the
	// tenant's requests held on every replica); a cutover that would take
	// longer is abandoned and tried again (docs/OPERATIONS.md, "Moving a
	// tenant").
	MoveCutoverTimeout time.Duration `env:"MOVE_CUTOVER_TIMEOUT" envDefault:"5s" help:"longest pause of an online move's cutover before it is retried"`
	// MoveSlotTimeout bounds how long an online move waits for its
	// replication slot on the source, which waits for every transaction
	// open there (docs/OPERATIONS.md, "Open transactions on the source");
	// past it the move fails, undone, with that reason.
	MoveSlotTimeout time.Duration `env:"MOVE_SLOT_TIMEOUT" envDefault:"10m" help:"longest an online move waits for the transactions open on its source server before it fails"`
	// MoveSourceGrace is how long the source a move left is kept (closed,
	// renamed) for a rollback by hand before the reconciler drops it.
	MoveSourceGrace time.Duration `env:"MOVE_SOURCE_GRACE" envDefault:"24h" help:"how long a moved tenant's old database is kept for a rollback by hand"`
	// BackupSchedule, if set, gives every ready tenant a backup this
	// often (taken by the reconciler's replica, two at a time);
	// BackupKeep is how many of a tenant's scheduled backups are kept.
	BackupSchedule time.Duration `env:"BACKUP_SCHEDULE" envDefault:"0" help:"give every ready tenant a backup this often; 0: no schedule" scope:"serve"`
	BackupKeep     int           `env:"BACKUP_KEEP" envDefault:"7" help:"scheduled backups kept per tenant" scope:"serve"`
	// PgBinDir is the folder of pg_dump; empty: found on PATH (Debian's
	// wrapper picks the newest installed client, which reads older
	// servers).
	PgBinDir string `env:"PG_BIN_DIR" help:"folder of pg_dump and pg_restore; empty: found on PATH"`
	// ProvisionTimeout bounds creating (or dropping) one tenant database.
	ProvisionTimeout time.Duration `env:"PROVISION_TIMEOUT" envDefault:"2m" help:"bound on creating or dropping one tenant database"`
	// ShutdownTimeout bounds draining in-flight requests on SIGTERM.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" help:"bound on draining in-flight requests on SIGTERM" scope:"serve"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" help:"json or text"`
}

// Secret is a string that never prints: a connection string with its
// password, or a token. Use Value to read it.
type Secret string

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// String masks the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "****"
}

// LogValue masks the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Setting is one variable Config reads, as --help shows it.
type Setting struct {
	Env, Default, Help string
	// Serve says only serve reads it (listeners, the HTTP API's gates,
	// the router's pools, what the reconciler does); the other commands
	// read the rest.
	Serve bool
	// Secret says it may be given in a file, as NAME_FILE.
	Secret bool
}

// Settings lists every variable of Config, in the order of its fields,
// from the fields' tags: the one source of --help.
func Settings() []Setting {
	var out []Setting
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		out = append(out, Setting{Env: name, Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help"),
			Serve: f.Tag.Get("scope") == "serve", Secret: slices.Contains(SecretVariables, name)})
	}
	return out
}

// flag binds one command-line flag to the field its environment variable
// fills; the flag wins when given.
type flag struct {
	name, env string
	set       func(c *Config, v string) error
}

var flags = []flag{
	{"listen", "LISTEN_ADDR", func(c *Config, v string) error { c.ListenAddr = v; return nil }},
	{"metrics-listen", "METRICS_ADDR", func(c *Config, v string) error { c.MetricsAddr = v; return nil }},
	{"database-url", "DATABASE_URL", func(c *Config, v string) error { c.DatabaseURL = Secret(v); return nil }},
	{"backup-dir", "BACKUP_DIR", func(c *Config, v string) error { c.BackupDir = v; return nil }},
	{"tenant-database-url", "TENANT_DATABASE_URL", func(c *Config, v string) error { c.TenantDatabaseURL = Secret(v); return nil }},
	{"tenant-pooler-url", "TENANT_POOLER_URL", func(c *Config, v string) error { c.TenantPoolerURL = Secret(v); return nil }},
	{"isolation", "TENANT_ISOLATION", func(c *Config, v string) error { c.TenantIsolation = v; return nil }},
	{"tenant-db-prefix", "TENANT_DB_PREFIX", func(c *Config, v string) error { c.TenantDBPrefix = v; return nil }},
	{"log-level", "LOG_LEVEL", func(c *Config, v string) error { c.LogLevel = v; return nil }},
}

// BindFlags declares on fs the flags of the settings that serve alone
// reads (serve) or of the others (!serve), with their setting's help and
// variable. Their defaults are empty on purpose: a default taken from the
// environment would print a secret in --help, and the settings' own
// defaults are listed with the settings.
func BindFlags(fs *pflag.FlagSet, serve bool) {
	byEnv := map[string]Setting{}
	for _, s := range Settings() {
		byEnv[s.Env] = s
	}
	for _, f := range flags {
		if s := byEnv[f.env]; s.Serve == serve {
			fs.String(f.name, "", fmt.Sprintf("%s (env %s)", s.Help, f.env))
		}
	}
}

// Load reads the environment (environ, as from os.Environ), lays the flags
// that were given on fs over it (fs may be nil), and validates the result.
// The error names the offending variable in one line.
func Load(environ []string, fs *pflag.FlagSet) (Config, error) {
	var c Config
	vars, err := secretFiles(env.ToMap(environ))
	if err != nil {
		return c, err
	}
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		return c, envError(err)
	}
	if fs != nil {
		for _, f := range flags {
			if fl := fs.Lookup(f.name); fl != nil && fl.Changed {
				if err := f.set(&c, fl.Value.String()); err != nil {
					return c, err
				}
			}
		}
	}
	if c.TenantDatabaseURL == "" {
		c.TenantDatabaseURL = c.DatabaseURL
	}
	return c, c.Validate()
}

// SecretVariables may each be given in a file instead: NAME_FILE=/path
// reads NAME from that file (its content, a trailing newline dropped),
// the convention of Docker and Kubernetes secrets, so that no secret has
// to sit in the process's environment or a unit file.
var SecretVariables = []string{"DATABASE_URL", "TENANT_DATABASE_URL", "TENANT_POOLER_URL", "ADMIN_TOKEN", "TENANT_ROLE_SECRET", "SERVER_SECRET_KEY"}

// secretFiles resolves the NAME_FILE variables of vars into NAME.
func secretFiles(vars map[string]string) (map[string]string, error) {
	for _, name := range SecretVariables {
		path := vars[name+"_FILE"]
		if path == "" {
			continue
		}
		if vars[name] != "" {
			return nil, fmt.Errorf("config: %s_FILE: %s is set too; set one of them", name, name)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			// The path, not the content: nothing secret in the message.
			return nil, fmt.Errorf("config: %s_FILE: %w", name, err)
		}
		v := strings.TrimRight(string(raw), "\r\n")
		if v == "" {
			return nil, fmt.Errorf("config: %s_FILE: %s is empty", name, path)
		}
		vars[name] = v
	}
	return vars, nil
}

var prefixPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// Validate checks every field and names the first bad one by its variable.
func (c *Config) Validate() error {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...))
	}
	if c.DatabaseURL == "" {
		return bad("DATABASE_URL", "is required (e.g. postgres://postgres@127.0.0.1:5432/controlplane?sslmode=disable)")
	}
	if err := checkURL(c.DatabaseURL.Value()); err != nil {
		return bad("DATABASE_URL", "%v", err)
	}
	if err := checkURL(c.TenantDatabaseURL.Value()); err != nil {
		return bad("TENANT_DATABASE_URL", "%v", err)
	}
	if c.TenantPoolerURL != "" {
		if err := checkURL(c.TenantPoolerURL.Value()); err != nil {
			return bad("TENANT_POOLER_URL", "%v", err)
		}
	}
	if _, port, err := net.SplitHostPort(c.ListenAddr); err != nil || port == "" {
		return bad("LISTEN_ADDR", "must be host:port or :port, got %q", c.ListenAddr)
	}
	if c.MetricsAddr != "" {
		_, port, err := net.SplitHostPort(c.MetricsAddr)
		if err != nil || port == "" {
			return bad("METRICS_ADDR", "must be host:port or :port, got %q", c.MetricsAddr)
		}
		// The same fixed address twice could never be bound; port 0 (any
		// free port, as tests use) is a different port for each.
		if c.MetricsAddr == c.ListenAddr && port != "0" {
			return bad("METRICS_ADDR", "must differ from LISTEN_ADDR (%s)", c.ListenAddr)
		}
	}
	if c.TenantIsolation != "database" && c.TenantIsolation != "schema" {
		return bad("TENANT_ISOLATION", "must be database or schema, got %q", c.TenantIsolation)
	}
	if !prefixPattern.MatchString(c.TenantDBPrefix) {
		return bad("TENANT_DB_PREFIX", "must be lower-case letters, digits and underscores, starting with a letter or underscore, at most 40 characters; got %q", c.TenantDBPrefix)
	}
	for name, v := range map[string]int{"TENANT_POOL_MAX_CONNS": c.TenantPoolMaxConns, "TENANT_SCHEMA_POOL_CONNS": c.TenantSchemaPoolConns} {
		if v < 1 {
			return bad(name, "must be at least 1, got %d", v)
		}
	}
	if c.MoveCutoverTimeout < 100*time.Millisecond || c.MoveCutoverTimeout > 10*time.Minute {
		return bad("MOVE_CUTOVER_TIMEOUT", "must be between 100ms and 10m, got %s", c.MoveCutoverTimeout)
	}
	if c.MoveSlotTimeout < time.Second || c.MoveSlotTimeout > 24*time.Hour {
		return bad("MOVE_SLOT_TIMEOUT", "must be between 1s and 24h, got %s", c.MoveSlotTimeout)
	}
	if c.MoveSourceGrace < 0 {
		return bad("MOVE_SOURCE_GRACE", "must be 0 (drop at the next reconcile) or more, got %s", c.MoveSourceGrace)
	}
	if c.TenantDeleteGrace < 0 {
		return bad("TENANT_DELETE_GRACE", "must be 0 (purge at the next reconcile) or more, got %s", c.TenantDeleteGrace)
	}
	if c.BackupKeep < 1 {
		return bad("BACKUP_KEEP", "must be at least 1, got %d", c.BackupKeep)
	}
	if c.BackupSchedule < 0 || (c.BackupSchedule > 0 && c.BackupSchedule < time.Minute) {
		return bad("BACKUP_SCHEDULE", "must be 0 (off) or at least 1m, got %s", c.BackupSchedule)
	}
	if c.TenantQueueMax < 0 {
		return bad("TENANT_QUEUE_MAX", "must be at least 0, got %d", c.TenantQueueMax)
	}
	for name, v := range map[string]int{"TENANT_POOLS_MAX": c.TenantPoolsMax, "TENANT_SERVER_MAX_CONNS": c.TenantServerMaxConns} {
		if v < 0 {
			return bad(name, "must be at least 1, or 0 to derive it from the tenant server, got %d", v)
		}
	}
	if c.TenantServerMaxConns > 0 && (c.TenantPoolMaxConns > c.TenantServerMaxConns || c.TenantSchemaPoolConns > c.TenantServerMaxConns) {
		return bad("TENANT_SERVER_MAX_CONNS", "must be at least TENANT_POOL_MAX_CONNS and TENANT_SCHEMA_POOL_CONNS (%d)", c.TenantServerMaxConns)
	}
	for name, d := range map[string]time.Duration{
		"TENANT_POOL_IDLE_TIMEOUT": c.TenantPoolIdleTimeout, "TENANT_ACQUIRE_TIMEOUT": c.TenantAcquireTimeout,
	} {
		if d <= 0 {
			return bad(name, "must be positive")
		}
	}
	if c.TenantSpareDatabases < 0 || c.TenantSpareDatabases > 50 {
		return bad("TENANT_SPARE_DATABASES", "must be between 0 and 50, got %d", c.TenantSpareDatabases)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return bad("ADMIN_TOKEN", "must be at least 16 characters (e.g. openssl rand -hex 32)")
	}
	if c.TenantRoleSecret != "" && len(c.TenantRoleSecret) < 16 {
		return bad("TENANT_ROLE_SECRET", "must be at least 16 characters (e.g. openssl rand -hex 32)")
	}
	if _, err := c.ServerKey(); err != nil {
		return bad("SERVER_SECRET_KEY", "%v", err)
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		return bad("TRUSTED_PROXIES", "%v", err)
	}
	if len(c.AdminHosts) == 0 {
		return bad("ADMIN_HOSTS", "must name at least one host (or *)")
	}
	for i, h := range c.AdminHosts {
		c.AdminHosts[i] = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	}
	if c.ReconcileInterval <= 0 {
		return bad("RECONCILE_INTERVAL", "must be positive")
	}
	if c.ProvisionTimeout <= 0 {
		return bad("PROVISION_TIMEOUT", "must be positive")
	}
	if c.ShutdownTimeout <= 0 {
		return bad("SHUTDOWN_TIMEOUT", "must be positive")
	}
	if _, err := c.SlogLevel(); err != nil {
		return bad("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return bad("LOG_FORMAT", "must be text or json, got %q", c.LogFormat)
	}
	return nil
}

// ServerKey decodes ServerSecretKey: nil when unset. Base64 (standard,
// padded, as openssl rand -base64 32 writes it) rather than hex or raw
// bytes: short enough for an environment file, and a key of the wrong
// length is caught here, not at the first sealed password.
func (c *Config) ServerKey() ([]byte, error) {
	if c.ServerSecretKey == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.ServerSecretKey.Value()))
	if err != nil || len(key) != 32 {
		// Never echo it: it is a key.
		return nil, errors.New("must be 32 bytes in base64 (e.g. openssl rand -base64 32)")
	}
	return key, nil
}

// TrustedProxyPrefixes parses TrustedProxies; a bare IP is a /32 (/128).
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// LoopbackListener reports whether ListenAddr accepts only local
// connections (127.0.0.0/8, ::1 or localhost); ":8080" listens everywhere.
func (c *Config) LoopbackListener() bool {
	host, _, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// SlogLevel returns LogLevel as a slog.Level.
func (c *Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// checkURL parses a connection string without ever echoing it: parse
// errors of the driver quote the string, password included.
func checkURL(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if strings.Contains(s, "://") {
		if _, err := url.Parse(s); err != nil {
			return errors.New("is not a valid URL")
		}
	}
	if _, err := pgx.ParseConfig(s); err != nil {
		return errors.New("is not a valid PostgreSQL connection string")
	}
	return nil
}

// envError names the variable behind a parse error of the env library,
// which itself names only the Go field.
func envError(err error) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		if f, ok := reflect.TypeOf(Config{}).FieldByName(pe.Name); ok {
			return fmt.Errorf("config: %s: %s", f.Tag.Get("env"), strings.Join(strings.Fields(pe.Err.Error()), " "))
		}
	}
	return fmt.Errorf("config: %s", strings.Join(strings.Fields(err.Error()), " "))
}
