package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/laracopilot/controlplane/config"
)

// withSettings ends cmd's --help (and, unless they set their own, its
// subcommands') with the settings it reads, each with its variable,
// default and meaning, from config.Settings (the struct tags of
// config.Config): serve's lists every setting (serve reads them all), the
// other commands' the ones they read. A flag, where a setting has one, is
// in the Flags section above and wins over the variable.
func withSettings(cmd *cobra.Command, serve bool) {
	cmd.SetHelpTemplate(cmd.HelpTemplate() + "\n" + settingsHelp(serve) + "\n")
}

func settingsHelp(serve bool) string {
	var b strings.Builder
	if serve {
		b.WriteString("Settings (environment variables; serve reads all of them):\n")
	} else {
		b.WriteString("Settings (environment variables) this command reads; serve reads more (controlplane serve --help):\n")
	}
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  VARIABLE\tDEFAULT\tMEANING")
	for _, s := range config.Settings() {
		if s.Serve && !serve {
			continue
		}
		def := s.Default
		if def == "" {
			def = "-"
		}
		help := s.Help
		if s.Secret {
			help += "; or " + s.Env + "_FILE, a file that holds it"
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", s.Env, def, help)
	}
	_ = w.Flush()
	return strings.TrimRight(b.String(), "\n")
}
