package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// The tenant lifecycle from the CLI, over the services the API uses:
// create (with its first key, shown once), list, show, suspend and resume,
// keys, and the operations a backup leaves; tables on a terminal, JSON
// with --json, audited as the CLI's user.
func TestTenantLifecycleFromTheCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+dir)

	out, err := b.cli("tenants", "create", "--name", "Acme Corp", "--slug", "acme-cli", "--domain", "acme-cli.example.com",
		"--timezone", "America/New_York", "--json")
	require.NoError(t, err, out)
	var created struct {
		Tenant controlplane.Tenant
		APIKey map[string]any `json:"api_key"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)
	require.Equal(t, controlplane.ProvisionReady, created.Tenant.Provisioning)
	require.Equal(t, "America/New_York", created.Tenant.Timezone)
	require.True(t, strings.HasPrefix(created.APIKey["key"].(string), "lc_"), "the first key, shown once: %v", created.APIKey)
	// Served by the API, with that key, once serve has heard of both (the
	// catalog's NOTIFY).
	require.Eventually(t, func() bool {
		status, _, _ := b.req("GET", "acme-cli.example.com", "/api/extensions", nil, "Authorization", "Bearer "+created.APIKey["key"].(string))
		return status == 200
	}, 10*time.Second, 20*time.Millisecond)

	_, err = b.cli("tenants", "create", "--name", "Dup", "--slug", "acme-cli", "--domain", "dup.example.com")
	require.ErrorContains(t, err, "slug", "a taken slug is refused, naming the field")

	out, err = b.cli("tenants", "list")
	require.NoError(t, err, out)
	require.Contains(t, out, "SLUG")
	require.Contains(t, out, "acme-cli.example.com")
	out, err = b.cli("tenants", "list", "--status", "suspended", "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"total": 0`)

	out, err = b.cli("tenants", "suspend", "acme-cli", "--json")
	require.NoError(t, err, out)
	require.Contains(t, out, `"status": "suspended"`)
	out, err = b.cli("tenants", "show", "acme-cli")
	require.NoError(t, err, out)
	require.Contains(t, out, "suspended")
	out, err = b.cli("tenants", "resume", "acme-cli")
	require.NoError(t, err, out)
	require.Contains(t, out, "active")

	out, err = b.cli("tenants", "keys", "create", "acme-cli", "--name", "switch")
	require.NoError(t, err, out)
	require.Contains(t, out, "(shown this once)")
	out, err = b.cli("tenants", "keys", "list", "acme-cli")
	require.NoError(t, err, out)
	require.Contains(t, out, "switch")
	require.NotContains(t, out, created.APIKey["key"], "never a secret in a list")
	var keys struct{ Data []controlplane.APIKey }
	out, err = b.cli("tenants", "keys", "list", "acme-cli", "--json")
	require.NoError(t, err, out)
	require.NoError(t, json.Unmarshal([]byte(out), &keys), out)
	require.Len(t, keys.Data, 2)
	out, err = b.cli("tenants", "keys", "revoke", "acme-cli", fmt.Sprint(keys.Data[0].ID))
	require.NoError(t, err, out)
	_, err = b.cli("tenants", "keys", "revoke", "acme-cli", "x")
	require.ErrorContains(t, err, "KEY_ID")

	_, err = b.cli("tenants", "backup", "acme-cli", "--backup-dir", dir)
	require.NoError(t, err)
	out, err = b.cli("operations", "list", "--tenant", "acme-cli")
	require.NoError(t, err, out)
	require.Contains(t, out, "backup")
	require.Contains(t, out, "succeeded")
	var ops struct{ Data []controlplane.Operation }
	out, err = b.cli("operations", "list", "--kind", "backup", "--json")
	require.NoError(t, err, out)
	require.NoError(t, json.Unmarshal([]byte(out), &ops), out)
	require.Len(t, ops.Data, 1)
	out, err = b.cli("operations", "show", fmt.Sprint(ops.Data[0].ID))
	require.NoError(t, err, out)
	require.Contains(t, out, `"kind": "backup"`)
	_, err = b.cli("operations", "cancel", fmt.Sprint(ops.Data[0].ID))
	require.Error(t, err, "a finished operation is not cancelled")

	var actor string
	require.NoError(t, b.app.Catalog.Raw(`SELECT actor FROM audit_log WHERE action IN ('tenant.suspend', 'tenant.activate', 'tenant.create') ORDER BY id DESC LIMIT 1`).Scan(&actor).Error)
	require.True(t, strings.HasPrefix(actor, "cli:"), "audited as the CLI's user: %s", actor)
}
