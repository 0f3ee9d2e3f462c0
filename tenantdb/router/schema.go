package router

import (
	"context"
	"database/sql"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"gorm.io/gorm"
)

// lane is a share of the schema tenants' connections and the one gorm
// handle all its tenants' handles derive from.
type lane struct {
	sql   *sql.DB
	conns *connector
	gorm  *gorm.DB
}

func (r *Router) schemaDB(t *controlplane.Tenant) (*gorm.DB, error) {
	name := t.DBName
	if db, ok := r.schemas.Get(name); ok {
		return db, nil
	}
	l := r.lane(name)
	if err := r.verify(t, l.sql, name); err != nil {
		return nil, err
	}
	// A session (clone 2): every chain on it starts from a copy of this
	// statement, setting included, so requests may share it.
	db := l.gorm.Set(tenantdb.SchemaSetting, name).Session(&gorm.Session{})
	r.schemas.Add(name, db)
	return db, nil
}

// schemaLaneConns is the size of a lane of the shared schema connections:
// enough for a tenant's concurrent requests to overlap, small enough that a
// backend meets a small share of the schemas.
const schemaLaneConns = 4

// laneSizes splits total connections in lanes of about schemaLaneConns
// (sizes differing by one at most), at least one lane.
func laneSizes(total int) []int {
	n := max(total/schemaLaneConns, 1)
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = max(total/n, 1)
		if i < total%n {
			sizes[i]++
		}
	}
	return sizes
}

// lane returns the shared connections the schema's tenant always uses.
func (r *Router) lane(schema string) lane {
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	return r.lanes[h.Sum32()%uint32(len(r.lanes))]
}

// laneCachedSchemas is the most schemas a lane serves with cached
// prepared statements. pgx caches 512 statements per connection, and a
// tenant's statements name its schema, so each tenant has its own: past a
// few hundred schemas per lane the cache turns over (a statement is
// prepared, used once and deallocated: three round trips where one would
// do), and the backends hold plans for thousands of schemas.
const laneCachedSchemas = 200

// laneMode chooses, as a lane's connection is made, how it runs
// statements: prepared and cached while the lane's share of the schema
// tenants fits the cache, else in one round trip without preparing
// (pgx's exec mode: PostgreSQL parses and plans each statement, a few tens
// of microseconds). Lane connections are recycled every 10 minutes, so the
// mode follows the fleet's size.
func (r *Router) laneMode(_ context.Context, cfg *pgx.ConnConfig) error {
	if r.cfg.SchemaTenants != nil && r.cfg.SchemaTenants()/len(r.lanes) > laneCachedSchemas {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return nil
}
