// Command controlplane is the LaraCopilot control plane: one binary whose
// subcommands serve the API (serve), run the catalog's and the tenants'
// migrations (migrate), and maintain tenants and tenant servers (tenants,
// servers). This package only wires the pieces together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		var ce configError
		var ue usageError
		if errors.As(err, &ce) || errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "controlplane",
		Short:         "LaraCopilot control plane: tenant catalog, per-tenant databases, tenant routing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	config.BindFlags(root.PersistentFlags(), false)
	withSettings(root, false)
	root.AddCommand(newServe(), newMigrate(), newTenants(), newServersCmd(), newOperations(), newVersion())
	// --version prints what `controlplane version` does.
	b := buildInfo()
	root.Version = b.Version
	root.SetVersionTemplate(fmt.Sprintf("controlplane %s (commit %s, built %s, %s; catalog schema %d, tenant schema %d)\n",
		b.Version, b.Commit, b.Date, b.GoVersion, b.CatalogSchema, b.TenantSchema))
	return root
}

// configError marks a configuration problem (exit status 2).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// loadConfig reads the configuration for cmd and sets up the logger.
func loadConfig(cmd *cobra.Command) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(os.Environ(), cmd.Flags())
	if err != nil {
		return cfg, nil, configError{err}
	}
	return cfg, newLogger(cfg, os.Stderr), nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel() // validated by Load
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
