package router

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
)

// verdictTTL is how long a tenant's schema, once checked, is trusted
// without reading it again. The check is one query on the tenant's first
// request after that long, not one per pool a budget under pressure opens
// and closes again; a migration made out of band in the meantime is seen
// within this much.
const verdictTTL = time.Minute

// verdictsKept bounds the verdicts remembered (a few dozen bytes each).
const verdictsKept = 100_000

// verdict identifies what was checked: the tenant's database or schema at
// the version the catalog recorded then.
type verdict struct {
	id      int64
	db      string
	version uint
}

// verify says whether this binary may serve t, reading its migrations table
// (in schema, through conns) unless a check of the same catalog state
// passed within verdictTTL. Concurrent first requests of a tenant share one
// check.
func (r *Router) verify(t *controlplane.Tenant, conns *sql.DB, schema string) error {
	key := verdict{t.ID, t.DBName, t.SchemaVersion}
	if _, ok := r.verified.Get(key); ok {
		return nil
	}
	_, err, _ := r.checks.Do(t.DBName, func() (any, error) {
		if err := r.checkSchema(t, conns, schema); err != nil {
			return nil, err
		}
		r.verified.Add(key, struct{}{})
		return nil, nil
	})
	return err
}

// checkSchema reads t's real migrations table (in schema, through conns)
// and says whether this binary may serve t; see Config.Latest.
func (r *Router) checkSchema(t *controlplane.Tenant, conns *sql.DB, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	real := tenantdb.ReadVersion(ctx, conns, schema)
	// The budget's own refusal (every connection busy) says so itself.
	var ce *controlplane.Error
	if errors.As(real.Err, &ce) {
		return ce
	}
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
