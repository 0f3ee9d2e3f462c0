package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
)

// help runs `controlplane args... --help` and returns what it printed.
func help(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append(args, "--help"))
	require.NoError(t, root.Execute())
	return out.String()
}

// TestHelpShowsEverySetting: serve's --help lists every setting with its
// variable and default, the other commands' the ones they read; flags of
// settings only serve reads are on serve alone; the README's table has
// every setting.
func TestHelpShowsEverySetting(t *testing.T) {
	t.Parallel()
	serve, root, sub := help(t, "serve"), help(t), help(t, "tenants", "list")
	line := func(s config.Setting) *regexp.Regexp {
		def := s.Default
		if def == "" {
			def = "-"
		}
		return regexp.MustCompile(`(?m)^  ` + s.Env + ` +` + regexp.QuoteMeta(def) + ` +\S`)
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	for _, s := range config.Settings() {
		require.NotEmpty(t, s.Help, "%s has no help tag", s.Env)
		require.Regexp(t, line(s), serve, "serve --help lists %s with its default", s.Env)
		if s.Serve {
			require.NotRegexp(t, line(s), root, "%s is read by serve alone", s.Env)
			require.NotRegexp(t, line(s), sub)
		} else {
			require.Regexp(t, line(s), root)
			require.Regexp(t, line(s), sub, "tenants list --help lists %s", s.Env)
		}
		require.Contains(t, string(readme), "| `"+s.Env+"` |", "README's configuration table lists %s", s.Env)
	}
	for _, f := range []string{"--listen", "--metrics-listen", "--tenant-pooler-url"} {
		require.Contains(t, serve, f+" string")
		require.NotContains(t, root, f+" ")
		require.NotContains(t, sub, f+" ")
	}
	require.Contains(t, root, "--database-url string")
	require.Contains(t, sub, "--database-url string", "global flags reach every command")
	require.False(t, strings.Contains(help(t, "version"), "VARIABLE"), "version reads no setting")
}
