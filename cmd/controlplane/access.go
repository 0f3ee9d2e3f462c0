package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/tenantdb"
)

// closeDatabases closes the catalog database and the tenant server's own
// database (the same one unless TENANT_DATABASE_URL says otherwise) to
// PUBLIC, so that no tenant role can connect to them. A database this role
// may not close is a warning naming the SQL that closes it, not a failure:
// on a managed service the control plane's role may not own its database,
// and refusing to start would only take the service down.
func closeDatabases(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	type target struct {
		url  string
		keep []string // the other configured roles using the same database
	}
	var targets []*target
	byDatabase := map[string]*target{}
	for _, url := range []string{cfg.DatabaseURL.Value(), cfg.TenantDatabaseURL.Value()} {
		c, err := pgx.ParseConfig(url)
		if err != nil {
			return errors.New("invalid connection string") // validated by config; never echo it
		}
		key := fmt.Sprintf("%s\x00%d\x00%s", c.Host, c.Port, c.Database)
		if t, ok := byDatabase[key]; ok {
			// Two roles on one database: whichever closes it keeps the
			// other's CONNECT too.
			t.keep = append(t.keep, c.User)
			continue
		}
		t := &target{url: url}
		byDatabase[key] = t
		targets = append(targets, t)
	}
	for _, t := range targets {
		err := tenantdb.CloseToPublic(ctx, t.url, t.keep...)
		var open *tenantdb.OpenDatabaseError
		switch {
		case errors.As(err, &open):
			log.Warn("database "+open.Database+" stays open to every login role, tenant roles included: this role may not revoke PUBLIC's CONNECT on it; "+
				"as its owner or a superuser, run the SQL in fix", "database", open.Database, "fix", open.Fix)
		case err != nil:
			return fmt.Errorf("close database to PUBLIC: %w", err)
		}
	}
	return nil
}
