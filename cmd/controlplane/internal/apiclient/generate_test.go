package apiclient

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestGeneratedClientIsCurrent regenerates the client from docs/openapi.yaml
// exactly as go:generate does (the oapi-codegen of go.mod's tool
// directive, this directory's config) into a temporary file, and fails
// when the committed apiclient.gen.go differs: the spec changed and
// `go generate ./cmd/controlplane/internal/apiclient` was not run.
func TestGeneratedClientIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen (a minute on a cold cache)")
	}
	// The same configuration without its output file: oapi-codegen then
	// prints the code (its -o does not override a config's output).
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg = regexp.MustCompile(`(?m)^output:.*$`).ReplaceAll(cfg, nil)
	cfgPath := filepath.Join(t.TempDir(), "oapi-codegen.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var fresh, stderr bytes.Buffer
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", cfgPath, "../../../../docs/openapi.yaml")
	cmd.Stdout, cmd.Stderr = &fresh, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, stderr.Bytes())
	}
	committed, err := os.ReadFile("apiclient.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh.Bytes(), committed) {
		t.Fatal("apiclient.gen.go is stale: run go generate ./cmd/controlplane/internal/apiclient and commit it")
	}
}
