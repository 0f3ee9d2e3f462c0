package router

import (
	"context"
	"database/sql"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
)

// checkSchema reads t's real migrations table (in schema, through conns)
// and says whether this binary may serve t; see Config.Latest.
func (r *Router) checkSchema(t *controlplane.Tenant, conns *sql.DB, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	real := tenantdb.ReadVersion(ctx, conns, schema)
	unavailable := func(format string, args ...any) error {
		e := controlplane.Errorf(controlplane.TenantUnavailable, "tenant %s is not available: "+format, append([]any{t.Slug}, args...)...)
		e.Err = real.Err
		return e
	}
	switch {
	case real.Err != nil:
		return unavailable("its schema version cannot be read")
	case real.Dirty:
		return unavailable("its migrations are dirty at version %d (see controlplane migrate tenants status)", real.Version)
	case real.Version > r.cfg.Latest:
		return unavailable("it is at schema version %d, newer than this server knows (%d)", real.Version, r.cfg.Latest)
	case real.Version < t.SchemaVersion:
		return unavailable("its schema is at version %d, behind the %d the catalog records (migrated out of band; run controlplane migrate tenants up --tenant %s)", real.Version, t.SchemaVersion, t.Slug)
	}
	return nil
}
