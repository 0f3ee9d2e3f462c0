package router

import (
	"database/sql"
	"errors"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// openGorm wraps conn in a gorm handle that retries a read whose cached
// statement went stale (retryStalePlan).
func openGorm(conn gorm.ConnPool) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: conn}), &gorm.Config{
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
		Logger:                 logger.Discard,
	})
	if err != nil {
		return nil, err
	}
	return db, db.Callback().Query().After("gorm:query").Register("tenantdb:retry_stale_plan", retryStalePlan)
}

// retryStalePlan runs a read once more when PostgreSQL refused its cached
// statement because a migration changed what it returns: pools cache
// prepared statements per connection, and gorm reads with SELECT *, so a
// migration that adds a column makes every connection's statement fail
// once ("cached plan must not change result type"). pgx has dropped the
// statement by then, so the retry prepares it again. Not inside a
// transaction, which PostgreSQL aborted: transactions go through Tx.
//
// Why not gorm's QueryFields (name the columns, so the result type does
// not change): it costs every read 21 allocations and 2.5 KB to build and
// scan the column list (measured), for an error a migration causes once
// per connection.
func retryStalePlan(db *gorm.DB) {
	var pgErr *pgconn.PgError
	if !errors.As(db.Error, &pgErr) || pgErr.Code != pgerrcode.FeatureNotSupported || !strings.Contains(pgErr.Message, "cached plan must not change result type") {
		return
	}
	if _, inTx := db.Statement.ConnPool.(*sql.Tx); inTx {
		return
	}
	db.Error, db.RowsAffected = nil, 0
	callbacks.Query(db) // the SQL is built already: this only runs it
}

// qualifyTables registers, on a lane's handle, the callback that writes the
// table of every gorm statement with its schema: "tenant_42"."extensions".
//
// Why not gorm's NamingStrategy with a table prefix, one handle per tenant:
// each handle then parses every model for itself (about 11 KB per tenant and
// model), and with thousands of tenants those parses were most of serve's
// live heap, and their rebuilds, on eviction, most of its CPU (measured,
// docs/BENCHMARKS.md). Here a model is parsed once per lane, and what is per
// tenant is one string.
func qualifyTables(db *gorm.DB) error {
	cb := db.Callback()
	return errors.Join(
		cb.Create().Before("gorm:create").Register("tenantdb:qualify", qualify),
		cb.Query().Before("gorm:query").Register("tenantdb:qualify", qualify),
		cb.Update().Before("gorm:update").Register("tenantdb:qualify", qualify),
		cb.Delete().Before("gorm:delete").Register("tenantdb:qualify", qualify),
		cb.Row().Before("gorm:row").Register("tenantdb:qualify", qualify),
	)
}

// qualify runs after gorm parsed the statement's model (Statement.Table is
// the bare table name) and before it builds the SQL: FROM, INSERT INTO,
// UPDATE and DELETE then name "schema"."table", while columns keep the bare
// table name as their qualifier, which PostgreSQL resolves to it. A
// statement without the setting (database mode) is left alone; raw SQL
// names its tables with Table.
func qualify(db *gorm.DB) {
	st := db.Statement
	s, ok := st.Settings.Load(query.SchemaSetting)
	if !ok || st.Table == "" || st.TableExpr != nil {
		return
	}
	st.TableExpr = &clause.Expr{SQL: pgx.Identifier{s.(string), st.Table}.Sanitize()}
}
