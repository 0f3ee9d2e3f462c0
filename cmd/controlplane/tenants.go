package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

func newTenants() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Tenant maintenance",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-role-passwords",
		Short: "Set every database-mode tenant's role password from the current role secret",
		Long: `Database-mode tenants each have a login role whose password is derived from
the role secret: TENANT_ROLE_SECRET, or without it a random secret kept in the
catalog database. serve sets every role's password itself when it starts with
another secret than the one they were last set from; this command does it
unconditionally (say, after a replica still on an older secret created
tenants), then records the secret as the one the roles were set from.
Connections already open keep working; new ones need the new password.
Run it with the same TENANT_ROLE_SECRET (or none) as the servers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCore(cmd, func(app *App) error {
				r, err := app.RolePasswords.Sync(cmd.Context(), true)
				if r.Ran {
					fmt.Fprintf(cmd.OutOrStdout(), "%d tenant roles updated, %d failed\n", r.Rotated, r.Failed)
				}
				return err
			})
		},
	})
	cmd.AddCommand(newTenantLifecycle()...)
	cmd.AddCommand(newTenantBackup(), newTenantRestore(), newTenantMove())
	cmd.AddCommand(newTenantDelete()...)
	return cmd
}

// newTenantBackup is `controlplane tenants backup SLUG`: the backup runs in
// this process, as serve runs one (same lock, same records), and the
// command waits for it, showing its progress.
func newTenantBackup() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup SLUG",
		Short: "Back up one tenant (pg_dump of its database or schema into BACKUP_DIR)",
		Long: `Take a backup of one tenant, as POST /api/tenants/{id}/backups does, in this
process: recorded as an operation in the catalog, run under the tenant's lock,
written to BACKUP_DIR (the same folder serve uses, for the download route).
The command waits for it: on a terminal one progress line (bytes, rate), else
(or with --json) a JSON line per second, then the backup. Ctrl-C stops it
(recorded as failed, nothing left on disk). Exit status 1 if it failed.`,
		Example: `  controlplane tenants backup acme-corp
  BACKUP_DIR=/srv/backups controlplane tenants backup acme-corp --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				return runOperation(ctx, cmd, app, asJSON, func() (*controlplane.Operation, error) { return app.Operations.StartBackup(ctx, t.ID) })
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON lines (progress, then the backup) instead of a progress line")
	return cmd
}

// newTenantMove is `controlplane tenants move SLUG --to SERVER`.
func newTenantMove() *cobra.Command {
	var asJSON, offline bool
	var to string
	cmd := &cobra.Command{
		Use:   "move SLUG --to SERVER",
		Short: "Move one tenant to another tenant server (online, or --offline)",
		Long: `Move a tenant to another registered tenant server, as POST
/api/tenants/{id}/move does, in this process, and wait for it. Online (the
default) copies it by logical replication while it is served, then holds its
requests on every serve replica for a cutover of at most MOVE_CUTOVER_TIMEOUT;
--offline copies it with pg_dump/pg_restore while it answers 503. The source
is kept, closed, for MOVE_SOURCE_GRACE (named in the result). Exit status 1 if
it failed (the tenant then stays where it was).`,
		Example: `  controlplane tenants move acme-corp --to pg-b
  controlplane tenants move acme-corp --to pg-b --offline --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError{fmt.Errorf("--to SERVER is required: a registered tenant server (controlplane servers list)")}
			}
			spec := controlplane.MoveSpec{Server: to, Mode: controlplane.MoveOnline}
			if offline {
				spec.Mode = controlplane.MoveOffline
			}
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				return runOperation(ctx, cmd, app, asJSON, func() (*controlplane.Operation, error) { return app.Operations.StartMove(ctx, t.ID, spec) })
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the server to move it to")
	cmd.Flags().BoolVar(&offline, "offline", false, "copy with pg_dump/pg_restore, the tenant answering 503 meanwhile")
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON lines instead of a progress line")
	return cmd
}

// newTenantRestore is `controlplane tenants restore SLUG --backup N`.
func newTenantRestore() *cobra.Command {
	var asJSON bool
	var backup int64
	cmd := &cobra.Command{
		Use:   "restore SLUG --backup N",
		Short: "Put one of a tenant's own backups back in place",
		Long: `Restore a tenant from one of its own backups, as POST /api/tenants/{id}/restore
does, in this process, and wait for it. A database-mode tenant may stay active
(the backup is restored and migrated up beside it, then swapped in with its
requests held); a schema-mode tenant must be suspended. The data it had is kept aside (named in
the result) for TENANT_DELETE_GRACE. Exit status 1 if it failed.`,
		Example: `  controlplane tenants restore acme-corp --backup 12`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if backup < 1 {
				return usageError{fmt.Errorf("--backup N is required: one of the tenant's backups (GET /api/tenants/{id}/backups)")}
			}
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				return runOperation(ctx, cmd, app, asJSON, func() (*controlplane.Operation, error) { return app.Operations.StartRestore(ctx, t.ID, backup) })
			})
		},
	}
	cmd.Flags().Int64Var(&backup, "backup", 0, "the backup's id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON lines instead of a progress line")
	return cmd
}

// newTenantDelete is `controlplane tenants delete SLUG [--purge-now]` and
// `controlplane tenants undelete SLUG`.
func newTenantDelete() []*cobra.Command {
	var purgeNow bool
	del := &cobra.Command{
		Use:   "delete SLUG [--purge-now]",
		Short: "Delete a suspended tenant (kept TENANT_DELETE_GRACE after a final backup), or purge it at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				if purgeNow {
					if err := app.Tenants.PurgeNow(ctx, t.ID); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s purged\n", t.Slug)
					return nil
				}
				d, err := app.Tenants.Delete(ctx, t.ID)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s deleted at %s (final backup taken); purged after TENANT_DELETE_GRACE unless undeleted\n", d.Slug, d.DeletedAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	del.Flags().BoolVar(&purgeNow, "purge-now", false, "drop its database or schema and its row at once, without a backup")
	undel := &cobra.Command{
		Use:   "undelete SLUG",
		Short: "Bring a deleted tenant back, suspended, within its grace period",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				if _, err := app.Tenants.Undelete(ctx, t.ID); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s undeleted: suspended; resume it with PATCH {\"status\": \"active\"}\n", t.Slug)
				return nil
			})
		},
	}
	return []*cobra.Command{del, undel}
}

// withTenant runs fn on the tenant of slug, with the core open and the
// CLI's actor (user@host) on the context for the audit trail.
func withTenant(cmd *cobra.Command, slug string, fn func(context.Context, *App, *controlplane.Tenant) error) error {
	return withCore(cmd, func(app *App) error {
		t, ok := app.Store.Cache().BySlug(slug)
		if !ok {
			return usageError{fmt.Errorf("no tenant has the slug %q", slug)}
		}
		return fn(controlplane.WithActor(cmd.Context(), cliActor()), app, t)
	})
}

// runOperation starts an operation in this process (start) and waits for
// it, showing its progress; Ctrl-C stops it (it ends failed).
func runOperation(ctx context.Context, cmd *cobra.Command, app *App, asJSON bool, start func() (*controlplane.Operation, error)) error {
	wait := app.Operations.Start(ctx)
	op, err := start()
	if err != nil {
		return err
	}
	p := newProgress(cmd.OutOrStdout(), os.Stderr, asJSON)
	for {
		cur, err := app.Store.Operation(context.WithoutCancel(ctx), op.ID)
		if err != nil {
			wait()
			return err
		}
		if cur.State != controlplane.OperationRunning {
			wait()
			return p.done(ctx, app, cur)
		}
		p.tick(cur)
		select {
		case <-ctx.Done(): // the operation sees it too, and ends failed
		case <-time.After(time.Second):
		}
	}
}

// progress shows a running operation: one line redrawn on a terminal, a
// JSON line per tick otherwise.
type progress struct {
	out, errw io.Writer
	json, tty bool
	start     time.Time
}

func newProgress(out, errw io.Writer, asJSON bool) *progress {
	tty := false
	if f, ok := errw.(*os.File); ok && !asJSON {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{out: out, errw: errw, json: asJSON || !tty, tty: tty, start: time.Now()}
}

func (p *progress) tick(op *controlplane.Operation) {
	bytes, _ := op.Progress["bytes"].(float64)
	elapsed := time.Since(p.start)
	rate := bytes / max(elapsed.Seconds(), 1e-9)
	if op.Kind == controlplane.OperationMove {
		rows, _ := op.Progress["rows"].(float64)
		if p.tty {
			fmt.Fprintf(p.errw, "\r\033[Kmove %s: tables %v/%v, %.0f rows (%.0f/s), lag %s, %s", op.Phase, op.Progress["tables_synced"], op.Progress["tables"],
				rows, rows/max(elapsed.Seconds(), 1e-9), humanBytes(asFloat(op.Progress["lag_bytes"])), elapsed.Round(time.Second))
			return
		}
		line := map[string]any{"operation": op.ID, "state": op.State, "phase": op.Phase, "elapsed_s": elapsed.Seconds()}
		for k, v := range op.Progress {
			line[k] = v
		}
		writeJSONLine(p.out, line)
		return
	}
	if p.tty {
		fmt.Fprintf(p.errw, "\r\033[K%s %s: %s, %s/s, %s", op.Kind, op.Phase, humanBytes(bytes), humanBytes(rate), elapsed.Round(time.Second))
		return
	}
	writeJSONLine(p.out, map[string]any{"operation": op.ID, "state": op.State, "phase": op.Phase, "bytes": int64(bytes), "elapsed_s": elapsed.Seconds()})
}

// done reports the finished operation and its backup; an error if it did
// not succeed.
func (p *progress) done(ctx context.Context, app *App, op *controlplane.Operation) error {
	if p.tty {
		fmt.Fprintln(p.errw)
	}
	var b *controlplane.Backup
	if op.BackupID != nil {
		b, _ = app.Store.Backup(context.WithoutCancel(ctx), *op.BackupID)
	}
	switch {
	case p.json:
		writeJSONLine(p.out, map[string]any{"operation": op, "backup": b})
	case op.Kind == controlplane.OperationBackup && b != nil && op.State == controlplane.OperationSucceeded:
		fmt.Fprintf(p.out, "backup %d of %s: %s in %s, sha256 %s\n", b.ID, b.TenantSlug, humanBytes(float64(*b.SizeBytes)), time.Since(p.start).Round(time.Millisecond), b.SHA256)
	case op.Kind == controlplane.OperationMove && op.State == controlplane.OperationSucceeded:
		fmt.Fprintf(p.out, "moved to %v in %s; the source is kept on %v as %v\n", op.Progress["target"], time.Since(p.start).Round(time.Millisecond), op.Progress["source"], op.Progress["aside"])
	case op.Kind == controlplane.OperationRestore && op.State == controlplane.OperationSucceeded:
		fmt.Fprintf(p.out, "restored in %s; the data it replaced is kept as %v\n", time.Since(p.start).Round(time.Millisecond), op.Progress["previous"])
	default:
		fmt.Fprintf(p.out, "%s %s: %s\n", op.Kind, op.State, op.Error)
	}
	if op.State != controlplane.OperationSucceeded {
		return fmt.Errorf("operation %d %s: %s", op.ID, op.State, op.Error)
	}
	return nil
}

func asFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

func humanBytes(n float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for n >= 1000 && i < len(units)-1 {
		n /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func writeJSONLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// withCore runs fn with the catalog and tenant servers opened as the
// migrate and tenants commands use them (openCore), and closes them.
func withCore(cmd *cobra.Command, fn func(app *App) error) error {
	cfg, log, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	app, err := openCore(cmd.Context(), cfg, log, migrations.Tenant)
	if err != nil {
		return err
	}
	defer app.Close()
	return fn(app)
}
