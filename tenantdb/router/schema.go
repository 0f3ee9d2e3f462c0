package router

import (
	"database/sql"
	"hash/fnv"

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
