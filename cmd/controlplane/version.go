package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// Stamped by make build and the Dockerfile:
//
//	go build -ldflags "-X main.version=v1.4.0 -X main.commit=$(git rev-parse HEAD) -X main.buildDate=$(date -u +%FT%TZ)"
//
// Unset, commit and date come from what the Go toolchain records of the
// checkout it built (go build in a git clone), and version is "dev".
var version, commit, buildDate string

// buildInfo is this binary's identity, read once: every command's
// --version, serve's first log line and its HTTP layer ask for it.
var buildInfo = sync.OnceValue(readBuildInfo)

func readBuildInfo() controlplane.Build {
	b := controlplane.Build{Version: version, Commit: commit, Date: buildDate, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		var modified bool
		var revision, at string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.Commit == "" && revision != "" {
			b.Commit = revision
			if modified {
				b.Commit += "-dirty"
			}
		}
		if b.Date == "" {
			b.Date = at
		}
	}
	for _, s := range []*string{&b.Version, &b.Commit, &b.Date} {
		if *s == "" {
			*s = "unknown"
		}
	}
	if version == "" {
		b.Version = "dev"
	}
	// The embedded migrations always read: a failure is a broken build.
	b.CatalogSchema, _ = migrations.Latest(migrations.Catalog)
	b.TenantSchema, _ = migrations.Latest(migrations.Tenant)
	return b
}

// printBuild writes b as `controlplane version` shows it.
func printBuild(w io.Writer, b controlplane.Build, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(b)
	}
	_, err := fmt.Fprintf(w, "controlplane %s\n  commit:          %s\n  built:           %s\n  go:              %s\n  catalog schema:  %d (latest catalog migration carried)\n  tenant schema:   %d (latest tenant migration carried)\n",
		b.Version, b.Commit, b.Date, b.GoVersion, b.CatalogSchema, b.TenantSchema)
	return err
}

func newVersion() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and the latest migrations this binary carries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printBuild(cmd.OutOrStdout(), buildInfo(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object")
	// It reads no setting: cobra's own help, not the settings table.
	cmd.SetHelpTemplate((&cobra.Command{}).HelpTemplate())
	return cmd
}
