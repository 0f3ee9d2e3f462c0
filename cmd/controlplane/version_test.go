package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// The binary says what it is: stamped by make build's -ldflags (the names
// it sets are main.version, main.commit, main.buildDate), with the Go
// version and the latest migrations it carries, in `controlplane version`,
// --version and serve's first log line. No database is needed.
func TestVersionIdentity(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "controlplane")
	build := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X main.version=v9.8.7 -X main.commit=0123abcd -X main.buildDate=2026-11-29T12:00:00Z", ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	out, err = exec.Command(bin, "version", "--json").Output()
	require.NoError(t, err)
	var got controlplane.Build
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	catalog, err := migrations.Latest(migrations.Catalog)
	require.NoError(t, err)
	tenant, err := migrations.Latest(migrations.Tenant)
	require.NoError(t, err)
	require.Equal(t, controlplane.Build{Version: "v9.8.7", Commit: "0123abcd", Date: "2026-11-29T12:00:00Z", GoVersion: runtime.Version(),
		CatalogSchema: catalog, TenantSchema: tenant}, got)

	out, err = exec.Command(bin, "version").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "controlplane v9.8.7")
	require.Contains(t, string(out), "commit:          0123abcd")
	out, err = exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "controlplane v9.8.7 (commit 0123abcd")

	// serve logs it first, before anything can fail (here: a listener
	// that is not loopback without ADMIN_TOKEN, refused with status 2).
	serve := exec.Command(bin, "serve")
	serve.Env = append(os.Environ(), "LISTEN_ADDR=0.0.0.0:0", "ADMIN_TOKEN=", "DATABASE_URL=postgres://nobody@127.0.0.1:1/none", "LOG_FORMAT=json")
	var stderr bytes.Buffer
	serve.Stderr = &stderr
	err = serve.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", stderr.String())
	require.Equal(t, 2, exit.ExitCode(), "%s", stderr.String())
	first, _, _ := strings.Cut(stderr.String(), "\n")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(first), &line), "%s", stderr.String())
	require.Equal(t, "controlplane starting", line["msg"])
	require.Equal(t, "v9.8.7", line["version"])
	require.Equal(t, "0123abcd", line["commit"])
	require.EqualValues(t, tenant, line["tenant_schema"])

	// Unstamped (go run, go test): "dev", never an empty field.
	b := buildInfo()
	require.Equal(t, "dev", b.Version)
	require.NotEmpty(t, b.Commit)
	require.NotEmpty(t, b.Date)
}
