package tenantdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL lets PUBLIC, hence every login role, CONNECT to (and create
// temporary tables in) a new database. Tenant databases, spares and
// templates are closed when made; the catalog database and the tenant
// server's own database (where schema-mode tenants live) are made by the
// operator, so the control plane closes them at start: a tenant role,
// whose password its tenant may learn, must not even connect there and
// list the catalog's tenants, or the schemas of schema-mode tenants.

// OpenDatabaseError reports a database PUBLIC can still connect to, because
// the control plane's role may not change its privileges (it is not the
// owner, as on some managed services). Fix is the SQL that closes it, for
// its owner or a superuser to run.
type OpenDatabaseError struct {
	Database string
	Fix      string
}

func (e *OpenDatabaseError) Error() string {
	return fmt.Sprintf("database %q is open to every login role (PUBLIC may CONNECT to it) and this role may not close it; "+
		"as its owner or a superuser, run: %s", e.Database, e.Fix)
}

// CloseToPublic takes CONNECT and TEMPORARY on the database url names away
// from PUBLIC, after granting them to the role url connects as and to the
// roles in keep (other roles of the control plane's configuration that use
// this database), so no role of ours locks itself out. It does nothing to
// a database already closed. When the role lacks the privilege the error
// is an *OpenDatabaseError; the database is left as it was.
func CloseToPublic(ctx context.Context, url string, keep ...string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New("invalid connection string")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// has_database_privilege('public', ...) is what PUBLIC itself holds,
	// whatever grants other roles have.
	const openQuery = `SELECT current_database(), current_user,
		has_database_privilege('public', current_database(), 'CONNECT') OR has_database_privilege('public', current_database(), 'TEMPORARY')`
	var database, user string
	var open bool
	if err := conn.QueryRow(ctx, openQuery).Scan(&database, &user, &open); err != nil {
		return err
	}
	if !open {
		return nil
	}
	roles := []string{quote(user)}
	for _, r := range keep {
		if r != "" && r != user {
			roles = append(roles, quote(r))
		}
	}
	db := quote(database)
	fix := `GRANT CONNECT, TEMPORARY ON DATABASE ` + db + ` TO ` + strings.Join(roles, ", ") + `; ` +
		`REVOKE CONNECT, TEMPORARY ON DATABASE ` + db + ` FROM PUBLIC;`
	// One implicit transaction: the grant and the revoke, or neither. A
	// role that holds CONNECT only through PUBLIC gets a warning, not an
	// error, from both: whether it worked is read back below.
	_, err = conn.Exec(ctx, fix)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == pgerrcode.InsufficientPrivilege {
		return &OpenDatabaseError{Database: database, Fix: fix}
	}
	if err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, openQuery).Scan(&database, &user, &open); err != nil {
		return err
	}
	if open {
		return &OpenDatabaseError{Database: database, Fix: fix}
	}
	return nil
}
