package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
	"github.com/laracopilot/controlplane/migrations"
)

func newMigrate() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Migrate the catalog or the tenants' databases",
	}
	cmd.AddCommand(newMigrateCatalog(), newMigrateTenants(), newMigrateCreate())
	return cmd
}

func newMigrateCatalog() *cobra.Command {
	return &cobra.Command{
		Use:   "catalog up | down N | goto V | force V | version",
		Short: "Migrate the catalog database",
		Long: `Migrate the catalog database (migrations/catalog). serve runs "up" itself at
start unless MIGRATE_CATALOG=false. "up" also closes the catalog database, and
the tenant server's own database, to every role but the control plane's
(REVOKE CONNECT, TEMPORARY ... FROM PUBLIC), as serve does at start.
"goto V" migrates up or down to version V; "force V" sets the recorded
version without running anything (after repairing a dirty catalog by hand,
as golang-migrate's own force: docs/MIGRATIONS.md).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			switch {
			case args[0] == "up" && len(args) == 1:
				v, err := catalog.Migrate(cfg.DatabaseURL.Value())
				if err != nil {
					return err
				}
				if err := closeDatabases(cmd.Context(), cfg, log); err != nil {
					return err
				}
				if err := registerDefaultServer(cmd.Context(), cfg, log); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "catalog at version %d\n", v)
				return nil
			case args[0] == "down" && len(args) == 2:
				n, err := strconv.Atoi(args[1])
				if err != nil || n < 1 {
					return usageError{fmt.Errorf("down takes a positive number of steps, got %q", args[1])}
				}
				return catalogRun(cmd, cfg.DatabaseURL.Value(), func(m *migrate.Migrate) error { return m.Steps(-n) })
			case (args[0] == "goto" || args[0] == "force") && len(args) == 2:
				v, err := strconv.ParseUint(args[1], 10, 32)
				if err != nil {
					return usageError{fmt.Errorf("%s takes a version number, got %q", args[0], args[1])}
				}
				return catalogRun(cmd, cfg.DatabaseURL.Value(), func(m *migrate.Migrate) error {
					if args[0] == "force" {
						return m.Force(int(v))
					}
					return m.Migrate(uint(v))
				})
			case args[0] == "version" && len(args) == 1:
				return catalogRun(cmd, cfg.DatabaseURL.Value(), func(*migrate.Migrate) error { return nil })
			}
			return usageError{fmt.Errorf("expected: up | down N | goto V | force V | version")}
		},
	}
}

// registerDefaultServer records TENANT_DATABASE_URL as the default
// server's URL, as serve does at start, so that a catalog migrated ahead of
// a deploy lists it already.
func registerDefaultServer(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	db, err := catalog.Open(ctx, cfg.DatabaseURL.Value())
	if err != nil {
		return err
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}()
	return newServers(cfg, catalog.NewStore(db), log).RegisterDefault(ctx)
}

// catalogRun runs fn on the catalog's migrations and prints the version.
func catalogRun(cmd *cobra.Command, url string, fn func(*migrate.Migrate) error) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	m, err := migrations.Open(db, migrations.Catalog, migrations.Target{})
	if err != nil {
		_ = db.Close()
		return err
	}
	defer m.Close()
	if err := fn(m); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return err
	}
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		v, err = 0, nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "catalog at version %d (dirty: %t)\n", v, dirty)
	return nil
}

// tenantsFlags are the selection and output flags of `migrate tenants`.
type tenantsFlags struct {
	slugs       []string
	all         bool
	status      string
	server      string
	concurrency int
	dryRun      bool
	json        bool
	// verify reads every selected tenant's real version (status); noVerify
	// lets up/goto skip tenants from the catalog alone.
	verify, noVerify bool
	maxFailures      int
}

// defaultConcurrency is per tenant server: enough to keep a server busy on
// the round trips of many small migrations without crowding its
// connections (each worker holds two). Servers run side by side, each with
// its own workers (controlplane.Fleet).
const defaultConcurrency = 4

func newMigrateTenants() *cobra.Command {
	var f tenantsFlags
	cmd := &cobra.Command{
		Use:   "tenants up | down N | goto V | force V | version | status",
		Short: "Migrate every tenant's database (or a selection)",
		Long: `Run golang-migrate on the tenants' own databases or schemas (migrations/tenant),
with a bounded pool of workers. One tenant's failure never stops the others;
the exit status is 0 only if every selected tenant succeeded. Tenants already
at the target version (per the catalog) are skipped without being opened.
Ctrl-C stops starting new tenants, lets running ones finish, and prints the
summary. "status" reports the fleet from the catalog, with the exact command
that repairs each dirty tenant; "status --verify" also reads every tenant's
real version and reports the ones migrated out of band (drift).

up and goto read the real version of each tenant the catalog says is at the
target before skipping it (batched; --no-verify skips from the catalog alone),
so a tenant the stock golang-migrate CLI moved is migrated, not skipped.

Select tenants with --tenant SLUG (repeatable) or --all, optionally narrowed
by --status.`,
		Example: `  controlplane migrate tenants status --verify
  controlplane migrate tenants up --tenant acme-corp --tenant beta --dry-run
  controlplane migrate tenants up --all --concurrency 8
  controlplane migrate tenants force 1 --tenant acme-corp`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := parseOp(args)
			if err != nil {
				return err
			}
			if args[0] != "status" && !f.all && len(f.slugs) == 0 {
				return usageError{errors.New("choose the tenants: --tenant SLUG (repeatable) or --all")}
			}
			if f.status != "" && f.status != "active" && f.status != "suspended" {
				return usageError{fmt.Errorf("--status must be active or suspended, got %q", f.status)}
			}
			return withCore(cmd, func(app *App) error {
				tenants, err := selectTenants(app, f)
				if err != nil {
					return err
				}
				h, err := migrations.ReadHistory(migrations.Tenant)
				if err != nil {
					return err
				}
				rep := newReporter(cmd.OutOrStdout(), os.Stderr, f.json, len(tenants), h.Versions())
				if args[0] == "status" {
					var real []controlplane.VersionRead
					if f.verify {
						real = app.TenantServers.ReadVersions(cmd.Context(), tenants, f.concurrency)
					}
					return rep.status(tenants, real)
				}
				fleet := &controlplane.Fleet{Migrator: app.TenantServers, Catalog: app.Store, Latest: app.LatestTenantSchema, Concurrency: f.concurrency, MaxFailures: f.maxFailures}
				if !f.noVerify {
					fleet.Verifier = app.TenantServers
				}
				if f.dryRun {
					return rep.dryRun(fleet, tenants, op)
				}
				return rep.run(cmd.Context(), fleet, tenants, op)
			})
		},
	}
	cmd.Flags().StringArrayVar(&f.slugs, "tenant", nil, "a tenant slug (repeatable)")
	cmd.Flags().BoolVar(&f.all, "all", false, "every tenant")
	cmd.Flags().StringVar(&f.status, "status", "", "only tenants with this status: active or suspended")
	cmd.Flags().StringVar(&f.server, "server", "", "only tenants on this tenant server (see controlplane servers list)")
	cmd.Flags().IntVar(&f.concurrency, "concurrency", defaultConcurrency, "tenants migrated at once on each tenant server (the servers run side by side)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print what would run for each tenant, change nothing")
	cmd.Flags().BoolVar(&f.json, "json", false, "one JSON object per tenant, then a summary object")
	cmd.Flags().BoolVar(&f.verify, "verify", false, "status: also read each tenant's real version and report drift")
	cmd.Flags().IntVar(&f.maxFailures, "max-failures", 0, "stop the run once this many tenants failed (0: never); the ones not started are reported as interrupted")
	cmd.Flags().BoolVar(&f.noVerify, "no-verify", false, "up/goto: skip tenants at the target from the catalog alone, without reading their real version")
	return cmd
}

func parseOp(args []string) (controlplane.MigrationOp, error) {
	arg := func() (int, error) {
		if len(args) != 2 {
			return 0, usageError{fmt.Errorf("%s takes one number", args[0])}
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			return 0, usageError{fmt.Errorf("%s takes a number ≥ 0, got %q", args[0], args[1])}
		}
		return n, nil
	}
	switch args[0] {
	case "up", "version", "status":
		if len(args) != 1 {
			return controlplane.MigrationOp{}, usageError{fmt.Errorf("%s takes no argument", args[0])}
		}
		kind := controlplane.MigrationKind(args[0])
		if args[0] == "status" {
			kind = controlplane.MigrateVersion
		}
		return controlplane.MigrationOp{Kind: kind}, nil
	case "down":
		n, err := arg()
		if err == nil && n == 0 {
			err = usageError{errors.New("down takes at least 1 step")}
		}
		return controlplane.MigrationOp{Kind: controlplane.MigrateDown, N: n}, err
	case "force":
		if len(args) == 2 && args[1] == "-1" { // no version: before the first migration
			return controlplane.MigrationOp{Kind: controlplane.MigrateForce, NoVersion: true}, nil
		}
		v, err := arg()
		return controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: uint(v)}, err
	case "goto":
		v, err := arg()
		return controlplane.MigrationOp{Kind: controlplane.MigrationKind(args[0]), Version: uint(v)}, err
	}
	return controlplane.MigrationOp{}, usageError{fmt.Errorf("unknown operation %q: expected up, down N, goto V, force V, version or status", args[0])}
}

// selectTenants picks the tenants of the run from the catalog, by id.
func selectTenants(app *App, f tenantsFlags) ([]*controlplane.Tenant, error) {
	var out []*controlplane.Tenant
	if len(f.slugs) > 0 && !f.all {
		seen := map[string]bool{}
		for _, slug := range f.slugs {
			t, ok := app.Store.Cache().BySlug(slug)
			if !ok {
				return nil, usageError{fmt.Errorf("no tenant has the slug %q", slug)}
			}
			if !seen[slug] { // --tenant a --tenant a migrates a once
				seen[slug] = true
				out = append(out, t)
			}
		}
	} else {
		app.Store.Cache().Each(func(t *controlplane.Tenant) { out = append(out, t) })
	}
	kept := out[:0]
	for _, t := range out {
		if (f.status == "" || string(t.Status) == f.status) && (f.server == "" || t.Server == f.server) {
			kept = append(kept, t)
		}
	}
	controlplane.SortBySlug(kept)
	return kept, nil
}

// usageError marks a mistake on the command line (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// failedError makes the exit status 1 after a run that printed its own
// report.
type failedError struct {
	failed, total int
	servers       []string // "name (failures)", for the servers that had any
}

func (e failedError) Error() string {
	msg := fmt.Sprintf("%d of %d tenants failed", e.failed, e.total)
	if len(e.servers) > 0 {
		msg += ", on " + strings.Join(e.servers, ", ")
	}
	return msg
}

// newMigrateCreate is `controlplane migrate create NAME`: the next numbered
// up/down pair in migrations/tenant (or --catalog), golang-migrate's
// convention (NNNNNN_name.up.sql, NNNNNN_name.down.sql), for a developer
// in a checkout; the files are embedded at the next build.
func newMigrateCreate() *cobra.Command {
	var dir string
	var forCatalog bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Write the next numbered up/down migration pair (migrations/tenant, or --catalog)",
		Example: `  controlplane migrate create extension_department
  controlplane migrate create audit_index --catalog`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				dir = filepath.Join("migrations", map[bool]string{true: "catalog", false: "tenant"}[forCatalog])
			}
			up, down, err := migrations.Create(dir, args[0])
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n(write the up and its down; docs/MIGRATIONS.md says what a tenant migration may do)\n", up, down)
			return nil
		},
	}
	cmd.Flags().BoolVar(&forCatalog, "catalog", false, "a catalog migration (migrations/catalog) instead of a tenant one")
	cmd.Flags().StringVar(&dir, "dir", "", "the folder (default: migrations/tenant, or migrations/catalog with --catalog)")
	return cmd
}
