package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/controlplane"
)

// The tenants' lifecycle from the CLI, over the same services as the API
// (controlplane.Tenants, controlplane.Operations): what an operator does
// with POST/GET/PATCH /api/tenants, /keys and /api/operations, audited
// with the CLI's user@host as actor. --json prints what the API returns.

// newTenantLifecycle is `controlplane tenants list|show|create|suspend|resume|keys`.
func newTenantLifecycle() []*cobra.Command {
	var asJSON bool
	jsonFlag := func(c *cobra.Command) *cobra.Command {
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON, as the API answers")
		return c
	}

	var f controlplane.TenantFilter
	var status string
	list := jsonFlag(&cobra.Command{
		Use:   "list",
		Short: "List tenants (GET /api/tenants): --status, --server, --query, --limit, --offset",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCore(cmd, func(app *App) error {
				f.Status = controlplane.Status(status)
				ts, total, err := app.Tenants.List(cmd.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"data": ts, "total": total, "limit": f.Limit, "offset": f.Offset})
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSLUG\tNAME\tDOMAIN\tSTATUS\tSERVER\tISOLATION\tPROVISIONING\tSCHEMA")
				for _, t := range ts {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d%s\n", t.ID, t.Slug, t.Name, t.Domain, t.Status, t.Server, t.Isolation,
						t.Provisioning, t.SchemaVersion, map[bool]string{true: " (dirty)"}[t.SchemaDirty])
				}
				fmt.Fprintf(w, "(%d of %d)\n", len(ts), total)
				return w.Flush()
			})
		},
	})
	list.Flags().StringVar(&status, "status", "", "active, suspended or deleted")
	list.Flags().StringVar(&f.Server, "server", "", "only the tenants on this tenant server")
	list.Flags().StringVar(&f.Query, "query", "", "a part of the name, slug or domain")
	list.Flags().IntVar(&f.Limit, "limit", controlplane.DefaultPageSize, fmt.Sprintf("at most this many (1 to %d)", controlplane.MaxPageSize))
	list.Flags().IntVar(&f.Offset, "offset", 0, "skip this many")

	show := jsonFlag(&cobra.Command{
		Use:   "show SLUG",
		Short: "Show one tenant (GET /api/tenants/{id})",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				cur, err := app.Tenants.Get(ctx, t.ID)
				if err != nil {
					return err
				}
				return printTenant(cmd.OutOrStdout(), cur, asJSON)
			})
		},
	})

	var spec controlplane.TenantSpec
	var settings string
	create := jsonFlag(&cobra.Command{
		Use:   "create --name NAME --slug SLUG --domain DOMAIN",
		Short: "Create a tenant and provision its database (POST /api/tenants); prints its first API key, once",
		Example: `  controlplane tenants create --name "Acme Corp" --slug acme-corp --domain acme.example.com --timezone America/New_York
  controlplane tenants create --name Beta --slug beta --domain beta.example.org --isolation schema --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec.Settings = json.RawMessage(settings)
			return withCore(cmd, func(app *App) error {
				t, key, err := app.Tenants.Create(controlplane.WithActor(cmd.Context(), cliActor()), spec)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"tenant": t, "api_key": key})
				}
				if err := printTenant(cmd.OutOrStdout(), t, false); err != nil {
					return err
				}
				if key != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "api key (shown this once): %s\n", key.Key)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "no API key could be made: issue one with controlplane tenants keys create "+t.Slug)
				}
				return nil
			})
		},
	})
	create.Flags().StringVar(&spec.Name, "name", "", "the tenant's name (required)")
	create.Flags().StringVar(&spec.Slug, "slug", "", "lower-case words joined by hyphens, e.g. acme-corp (required)")
	create.Flags().StringVar(&spec.Domain, "domain", "", "the tenant's host name, also its SIP realm (required)")
	create.Flags().StringVar(&spec.Timezone, "timezone", controlplane.DefaultTimezone, "an IANA time zone, for reports")
	create.Flags().IntVar(&spec.MaxExtensions, "max-extensions", controlplane.DefaultMaxExtensions, "the cap on extensions")
	create.Flags().StringVar((*string)(&spec.Isolation), "isolation", "", "database or schema (default: ISOLATION_MODE)")
	create.Flags().StringVar(&spec.Server, "server", "", "the tenant server to place it on (default: the least loaded)")
	create.Flags().StringVar((*string)(&spec.Status), "status", string(controlplane.StatusActive), "active or suspended")
	create.Flags().StringVar(&settings, "settings", "[]", "the settings, a JSON array")

	setStatus := func(use, short string, to controlplane.Status) *cobra.Command {
		return jsonFlag(&cobra.Command{
			Use:   use + " SLUG",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
					cur, err := app.Tenants.Patch(ctx, t.ID, controlplane.TenantPatch{Status: &to})
					if err != nil {
						return err
					}
					return printTenant(cmd.OutOrStdout(), cur, asJSON)
				})
			},
		})
	}
	return []*cobra.Command{list, show, create,
		setStatus("suspend", "Suspend a tenant: its requests answer 403, its data stays (PATCH {\"status\": \"suspended\"})", controlplane.StatusSuspended),
		setStatus("resume", "Resume a suspended tenant (PATCH {\"status\": \"active\"})", controlplane.StatusActive),
		newTenantKeys()}
}

// newTenantKeys is `controlplane tenants keys list|create|revoke SLUG`.
func newTenantKeys() *cobra.Command {
	var asJSON bool
	keys := &cobra.Command{Use: "keys", Short: "A tenant's API keys (/api/tenants/{id}/keys)"}
	keys.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON, as the API answers")
	keys.AddCommand(&cobra.Command{
		Use:   "list SLUG",
		Short: "List a tenant's API keys, by prefix (never the secret)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				ks, err := app.Tenants.ListKeys(ctx, t.ID)
				if err != nil || asJSON {
					return firstErr(err, func() error { return writeJSON(cmd.OutOrStdout(), map[string]any{"data": ks}) })
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tPREFIX\tCREATED\tLAST USED")
				for _, k := range ks {
					used := "never"
					if k.LastUsedAt != nil {
						used = k.LastUsedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%d\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.CreatedAt.Format(time.RFC3339), used)
				}
				return w.Flush()
			})
		},
	})
	var name string
	create := &cobra.Command{
		Use:   "create SLUG [--name NAME]",
		Short: "Issue an API key for a tenant; the secret is printed this once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				k, err := app.Tenants.CreateKey(ctx, t.ID, controlplane.KeySpec{Name: name})
				if err != nil || asJSON {
					return firstErr(err, func() error { return writeJSON(cmd.OutOrStdout(), k) })
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key %d (%s…) for %s: %s\n(shown this once)\n", k.ID, k.Prefix, t.Slug, k.Key)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the key is for")
	keys.AddCommand(create, &cobra.Command{
		Use:   "revoke SLUG KEY_ID",
		Short: "Revoke one of a tenant's API keys",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || id < 1 {
				return usageError{fmt.Errorf("KEY_ID must be a key's id (controlplane tenants keys list %s)", args[0])}
			}
			return withTenant(cmd, args[0], func(ctx context.Context, app *App, t *controlplane.Tenant) error {
				if err := app.Tenants.RevokeKey(ctx, t.ID, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key %d of %s revoked\n", id, t.Slug)
				return nil
			})
		},
	})
	return keys
}

// newOperations is `controlplane operations list|show|cancel`.
func newOperations() *cobra.Command {
	var asJSON bool
	ops := &cobra.Command{Use: "operations", Short: "Long actions on tenants: backups, restores, moves (/api/operations)"}
	ops.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON, as the API answers")
	var slug, kind, state string
	var limit int
	list := &cobra.Command{
		Use:   "list [--tenant SLUG] [--kind K] [--state S]",
		Short: "List operations, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCore(cmd, func(app *App) error {
				f := controlplane.OperationFilter{Kind: controlplane.OperationKind(kind), State: controlplane.OperationState(state), Limit: limit}
				if slug != "" {
					t, ok := app.Store.Cache().BySlug(slug)
					if !ok {
						return usageError{fmt.Errorf("no tenant has the slug %q", slug)}
					}
					f.TenantID = t.ID
				}
				list, err := app.Store.Operations(cmd.Context(), f)
				if err != nil || asJSON {
					return firstErr(err, func() error { return writeJSON(cmd.OutOrStdout(), map[string]any{"data": list}) })
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tKIND\tTENANT\tSTATE\tPHASE\tSTARTED\tTOOK\tERROR")
				for _, op := range list {
					took := "-"
					if op.FinishedAt != nil {
						took = op.FinishedAt.Sub(op.StartedAt).Round(time.Millisecond).String()
					}
					fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", op.ID, op.Kind, op.TenantID, op.State, op.Phase, op.StartedAt.Format(time.RFC3339), took, op.Error)
				}
				return w.Flush()
			})
		},
	}
	list.Flags().StringVar(&slug, "tenant", "", "one tenant's, by slug")
	list.Flags().StringVar(&kind, "kind", "", "backup, restore or move")
	list.Flags().StringVar(&state, "state", "", "running, succeeded, failed or cancelled")
	list.Flags().IntVar(&limit, "limit", controlplane.DefaultPageSize, "at most this many")
	byID := func(use, short string, run func(context.Context, *App, int64) (*controlplane.Operation, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || id < 1 {
					return usageError{fmt.Errorf("ID must be an operation's id (controlplane operations list)")}
				}
				return withCore(cmd, func(app *App) error {
					op, err := run(controlplane.WithActor(cmd.Context(), cliActor()), app, id)
					if err != nil {
						return err
					}
					return writeJSON(cmd.OutOrStdout(), op)
				})
			},
		}
	}
	ops.AddCommand(list,
		byID("show", "Show one operation with its progress (JSON)", func(ctx context.Context, app *App, id int64) (*controlplane.Operation, error) {
			return app.Store.Operation(ctx, id)
		}),
		byID("cancel", "Ask a running operation to stop (it ends cancelled, undone)", func(ctx context.Context, app *App, id int64) (*controlplane.Operation, error) {
			return app.Operations.Cancel(ctx, id)
		}))
	return ops
}

// printTenant writes t as a column of fields, or as JSON.
func printTenant(out io.Writer, t *controlplane.Tenant, asJSON bool) error {
	if asJSON {
		return writeJSON(out, t)
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"id", strconv.FormatInt(t.ID, 10)}, {"slug", t.Slug}, {"name", t.Name}, {"domain", t.Domain},
		{"status", string(t.Status)}, {"timezone", t.Timezone}, {"max_extensions", strconv.Itoa(t.MaxExtensions)},
		{"isolation", string(t.Isolation)}, {"server", t.Server}, {"db_name", t.DBName},
		{"provisioning", string(t.Provisioning)}, {"schema_version", fmt.Sprintf("%d (dirty: %t)", t.SchemaVersion, t.SchemaDirty)},
		{"last_error", t.LastError}, {"created_at", t.CreatedAt.Format(time.RFC3339)},
	} {
		fmt.Fprintf(w, "%s\t%s\n", kv[0], kv[1])
	}
	return w.Flush()
}

// firstErr is err, or what then does when err is nil.
func firstErr(err error, then func() error) error {
	if err != nil {
		return err
	}
	return then()
}
