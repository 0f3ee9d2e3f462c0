package tenantdb

import (
	"strings"
	"testing"
)

// pg_dump and pg_restore get what they need to run, and none of the
// control plane's secrets.
func TestToolEnvKeepsSecretsOut(t *testing.T) {
	t.Setenv("TENANT_ROLE_SECRET", "role-secret-value")
	t.Setenv("ADMIN_TOKEN", "admin-token-value")
	t.Setenv("DATABASE_URL", "postgres://cp:pw@db/cat")
	t.Setenv("PGPASSFILE", "/etc/controlplane/pgpass")
	env := strings.Join(toolEnv(), "\n")
	for _, secret := range []string{"role-secret-value", "admin-token-value", "cp:pw@"} {
		if strings.Contains(env, secret) {
			t.Errorf("a client program's environment holds %q", secret)
		}
	}
	for _, want := range []string{"PATH=", "PGPASSFILE=/etc/controlplane/pgpass"} {
		if !strings.Contains(env, want) {
			t.Errorf("a client program's environment lacks %s", want)
		}
	}
}
