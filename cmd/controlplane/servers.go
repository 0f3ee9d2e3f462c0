package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
)

func newServersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "servers",
		Short: "The registry of tenant servers",
		Long: `Register, list, drain and remove the PostgreSQL servers tenant databases live
on. The commands work on the catalog database directly (DATABASE_URL), through
the same rules as the operator API (POST/GET/PATCH/DELETE /api/servers), and
their changes are in the audit trail as cli:USER@HOST.

A server's URL may carry its password: it is then sealed in the catalog with
SERVER_SECRET_KEY (which must be set, and the same for every process), and
the URL is stored and shown without it. Or leave the password out of the URL
and put it in the control plane's pgpass file (PGPASSFILE). The server of
TENANT_DATABASE_URL is registered as "default" by serve and by
"migrate catalog up"; its credentials stay in the environment.`,
		Example: `  controlplane servers add pg-b --url 'postgres://cp@10.0.0.2:5432/postgres?sslmode=require' --capacity 500
  controlplane servers list
  controlplane servers drain pg-b
  controlplane servers remove pg-b`,
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON (the API's objects) instead of a table")

	var url, status string
	var capacity int
	add := &cobra.Command{
		Use:   "add NAME --url URL --capacity N",
		Short: "Register a tenant server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("url") || !cmd.Flags().Changed("capacity") {
				return usageError{fmt.Errorf("add needs --url and --capacity")}
			}
			return withServers(cmd, func(ctx context.Context, s *controlplane.Servers) error {
				srv, err := s.Create(ctx, controlplane.ServerSpec{Name: args[0], URL: url, Capacity: &capacity, Status: controlplane.ServerStatus(status)})
				if err != nil {
					return err
				}
				// Placement takes the least loaded by tenants ÷ capacity:
				// with its placeholder capacity the default server stays
				// the least loaded, and the new server would get nothing.
				if def, err := s.Get(ctx, controlplane.DefaultServer); err == nil && def.Capacity == controlplane.MaxServerCapacity {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: server %s still has the placeholder capacity %d, so placement keeps choosing it (least loaded by tenants ÷ capacity); "+
						"set its real capacity: PATCH /api/servers/%s {\"capacity\": N}\n", def.Name, def.Capacity, def.Name)
				}
				return printServer(cmd.OutOrStdout(), srv, asJSON)
			})
		},
	}
	add.Flags().StringVar(&url, "url", "", "postgres://user[:password]@host:port/database?sslmode=... (a password needs SERVER_SECRET_KEY)")
	add.Flags().IntVar(&capacity, "capacity", 0, "how many tenants the server may hold (1 to 1000000)")
	add.Flags().StringVar(&status, "status", "active", "active, draining or disabled")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the tenant servers and what lives on them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withServers(cmd, func(ctx context.Context, s *controlplane.Servers) error {
				servers, err := s.List(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), servers)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tSTATUS\tCAPACITY\tTENANTS\tREADY\tDATABASE\tSCHEMA\tSPARES\tPASSWORD\tURL")
				for _, srv := range servers {
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", srv.Name, srv.Status, srv.Capacity,
						srv.DatabaseTenants+srv.SchemaTenants, srv.Tenants[controlplane.ProvisionReady], srv.DatabaseTenants, srv.SchemaTenants,
						srv.Spares, passwordColumn(srv), srv.URL)
				}
				return w.Flush()
			})
		},
	}

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one tenant server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withServers(cmd, func(ctx context.Context, s *controlplane.Servers) error {
				srv, err := s.Get(ctx, args[0])
				if err != nil {
					return err
				}
				return printServer(cmd.OutOrStdout(), srv, asJSON)
			})
		},
	}

	// drain, activate and disable are PATCH {"status": ...}.
	setStatus := func(use, short string, st controlplane.ServerStatus) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withServers(cmd, func(ctx context.Context, s *controlplane.Servers) error {
					srv, err := s.Patch(ctx, args[0], controlplane.ServerPatch{Status: &st})
					if err != nil {
						return err
					}
					return printServer(cmd.OutOrStdout(), srv, asJSON)
				})
			},
		}
	}

	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a tenant server from the registry (refused while tenants or spares are on it)",
		Long: `Remove a server from the registry. Nothing on the server itself is touched.
Refused while a tenant or a spare database is on it, and for "default".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withServers(cmd, func(ctx context.Context, s *controlplane.Servers) error {
				if err := s.Delete(ctx, args[0]); err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]string{"removed": args[0]})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "server %s removed\n", args[0])
				return nil
			})
		},
	}

	drain := setStatus("drain", "Take no new tenants on a server (status draining); with --move, move its tenants off it", controlplane.ServerDraining)
	var move, offline bool
	var concurrency int
	drainStatus := drain.RunE
	drain.Long = `Set a server draining: placement puts no new tenant there; its tenants stay
and are served. With --move, then move every tenant off it, --concurrency at a
time (default 2), each to the server placement chooses (online moves, or
--offline), waiting for each; one line per tenant (JSON with --json). Deleted
tenants are not moved. Exit status 1 if any move failed (those tenants stay
where they were; run it again).`
	drain.Example = `  controlplane servers drain pg-b
  controlplane servers drain pg-b --move --concurrency 4`
	drain.RunE = func(cmd *cobra.Command, args []string) error {
		if err := drainStatus(cmd, args); err != nil || !move {
			return err
		}
		mode := controlplane.MoveOnline
		if offline {
			mode = controlplane.MoveOffline
		}
		return withCore(cmd, func(app *App) error {
			ctx := controlplane.WithActor(cmd.Context(), cliActor())
			tenants, _, err := app.Store.ListTenants(ctx, controlplane.TenantFilter{Server: args[0], Limit: 1 << 30})
			if err != nil {
				return err
			}
			wait := app.Operations.Start(ctx)
			defer wait()
			failed := app.Operations.Drain(ctx, tenants, app.Tenants.Placement, mode, concurrency, func(r controlplane.DrainResult) {
				switch {
				case asJSON:
					_ = writeJSON(cmd.OutOrStdout(), r)
				case r.Error != "":
					fmt.Fprintf(cmd.OutOrStdout(), "%s (tenant %d): not moved: %s\n", r.Slug, r.TenantID, r.Error)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s (tenant %d): moved to %s\n", r.Slug, r.TenantID, r.Target)
				}
			})
			if failed > 0 {
				return fmt.Errorf("%d of %d tenants were not moved off %s", failed, len(tenants), args[0])
			}
			return nil
		})
	}
	drain.Flags().BoolVar(&move, "move", false, "then move every tenant off the server")
	drain.Flags().BoolVar(&offline, "offline", false, "with --move: offline moves (pg_dump/pg_restore, each tenant answering 503 meanwhile)")
	drain.Flags().IntVar(&concurrency, "concurrency", 2, "with --move: moves at once")
	cmd.AddCommand(add, list, show,
		drain,
		setStatus("activate", "Take new tenants on a server again (status active)", controlplane.ServerActive),
		setStatus("disable", "Take no new tenants and stop counting a server's capacity (status disabled)", controlplane.ServerDisabled),
		remove)
	return cmd
}

// withServers runs fn on the registry, on the catalog database alone: the
// registry needs no connection to any tenant server. Its writes are
// audited as this command's user.
func withServers(cmd *cobra.Command, fn func(context.Context, *controlplane.Servers) error) error {
	cfg, log, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := controlplane.WithActor(cmd.Context(), cliActor())
	db, err := openCatalog(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}()
	return fn(ctx, newServers(cfg, catalog.NewStore(db), log))
}

// openCatalog connects to the catalog, which must be migrated.
func openCatalog(ctx context.Context, cfg config.Config) (*gorm.DB, error) {
	db, err := catalog.Open(ctx, cfg.DatabaseURL.Value())
	if err != nil {
		return nil, err
	}
	if err := catalog.CheckMigrated(ctx, db); err != nil {
		if sqlDB, e := db.DB(); e == nil {
			_ = sqlDB.Close()
		}
		return nil, fmt.Errorf("%w (run: controlplane migrate catalog up)", err)
	}
	return db, nil
}

// cliActor names the operator running a command in the audit trail:
// cli:USER@HOST.
func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return "cli:" + name + "@" + host
}

func printServer(out io.Writer, srv *controlplane.Server, asJSON bool) error {
	if asJSON {
		return writeJSON(out, srv)
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"name", srv.Name},
		{"status", string(srv.Status)},
		{"capacity", strconv.Itoa(srv.Capacity)},
		{"url", srv.URL},
		{"password", passwordColumn(*srv)},
		{"tenants", fmt.Sprintf("%d ready, %d pending, %d failed, %d deleting",
			srv.Tenants[controlplane.ProvisionReady], srv.Tenants[controlplane.ProvisionPending],
			srv.Tenants[controlplane.ProvisionFailed], srv.Tenants[controlplane.ProvisionDeleting])},
		{"database tenants", strconv.Itoa(srv.DatabaseTenants)},
		{"schema tenants", strconv.Itoa(srv.SchemaTenants)},
		{"spares", strconv.Itoa(srv.Spares)},
		{"created", srv.CreatedAt.UTC().Format("2006-01-02 15:04:05Z")},
		{"updated", srv.UpdatedAt.UTC().Format("2006-01-02 15:04:05Z")},
	} {
		fmt.Fprintf(w, "%s:\t%s\n", kv[0], kv[1])
	}
	return w.Flush()
}

// passwordColumn says where a server's password comes from, never what it
// is: sealed in the catalog, the environment (the default server's
// TENANT_DATABASE_URL), or nowhere the control plane keeps (a pgpass
// file, or an authentication without password).
func passwordColumn(srv controlplane.Server) string {
	switch {
	case srv.HasPassword:
		return "sealed"
	case srv.Name == controlplane.DefaultServer:
		return "environment"
	}
	return "pgpass"
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
