package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// POST /api/tenants with from_backup makes a new tenant holding a copy of
// a backup's data (for support or staging): its own database, role, keys
// and ids; the original untouched and independent of it. A bad from_backup
// is a 422 naming it, and nothing is created.
func TestCreateFromBackup(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=0")
	a := b.create(tenantBody("original", controlplane.IsolationDatabase))
	b.addExtensions("original.example.com", "1001", "1002")
	backup := b.backupNow(a["id"])
	b.addExtensions("original.example.com", "1003") // after the backup

	body := tenantBody("staging", "")
	delete(body, "isolation")
	body["from_backup"] = backup
	copied := b.create(body)
	require.Equal(t, "database", copied["isolation"])
	require.Equal(t, "ready", copied["provisioning"])
	require.Equal(t, []string{"1001", "1002"}, b.extensionNumbers("staging.example.com"))
	b.addExtensions("staging.example.com", "2001")
	require.Equal(t, []string{"1001", "1002", "1003"}, b.extensionNumbers("original.example.com"))
	require.Equal(t, []string{"1001", "1002", "2001"}, b.extensionNumbers("staging.example.com"))
	require.NoError(t, b.tenantLogin(copied), "the copy's own role owns its database")
	_, ops := b.do("GET", fmt.Sprintf("/api/operations?tenant=%v&kind=restore", copied["id"]), nil)
	op := ops["data"].([]any)[0].(map[string]any)
	require.Equal(t, "succeeded", op["state"], "%v", op)
	require.EqualValues(t, a["id"], op["progress"].(map[string]any)["copy_of"])
	require.Len(t, b.tenantTables(copied), len(allTenantTables), "the fresh database the copy replaced was dropped, not kept aside")

	s := setup(t, controlplane.IsolationSchema)
	sa := s.create(tenantBody("schemaone", controlplane.IsolationSchema))
	sBackup := s.backupNow(sa["id"])
	for _, c := range []struct {
		b     *bundle
		body  map[string]any
		field string
	}{
		{b, map[string]any{"from_backup": 999}, "from_backup"},
		{b, map[string]any{"from_backup": backup, "isolation": "schema"}, "isolation"},
		{s, map[string]any{"from_backup": sBackup}, "from_backup"},
	} {
		body := tenantBody("nope", "")
		delete(body, "isolation")
		for k, v := range c.body {
			body[k] = v
		}
		status, got := c.b.do("POST", "/api/tenants", body)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", c.body, got)
		require.Contains(t, fmt.Sprint(got["error"].(map[string]any)["fields"]), c.field, "%v", got)
		status, _ = c.b.do("GET", "/api/tenants?q=nope", nil)
		require.Equal(t, http.StatusOK, status)
	}
	_, list := b.do("GET", "/api/tenants?q=nope", nil)
	require.Empty(t, list["data"], "a refused copy creates nothing")
	status, got := b.do("PUT", fmt.Sprintf("/api/tenants/%v", a["id"]), map[string]any{"name": "x", "slug": "original", "domain": "original.example.com", "from_backup": backup})
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Contains(t, fmt.Sprint(got), "from_backup")
}
