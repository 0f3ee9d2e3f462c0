package catalog

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
)

var _ controlplane.ServerStore = (*Store)(nil)

// serverRow is the servers table (migrations/catalog/000008).
type serverRow struct {
	Name        string `gorm:"column:name;primaryKey"`
	URL         string `gorm:"column:url"`
	PasswordEnc []byte `gorm:"column:password_enc"`
	Capacity    int    `gorm:"column:capacity"`
	Status      string `gorm:"column:status"`
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func (serverRow) TableName() string { return "servers" }

// server is the row as operators see it: the sealed password is reduced to
// whether there is one.
func (r *serverRow) server() controlplane.Server {
	return controlplane.Server{
		Name: r.Name, URL: r.URL, HasPassword: r.PasswordEnc != nil, Capacity: r.Capacity,
		Status: controlplane.ServerStatus(r.Status), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		ServerLoad: controlplane.NewServerLoad(),
	}
}

// serverConstraints names the servers table's constraints by the API field
// they protect.
var serverConstraints = sqlerr.Register(sqlerr.Catalog, map[string]sqlerr.Constraint{
	"servers_pkey":           {Field: "name", Reason: "is already the name of a registered server"},
	"servers_name_format":    {Field: "name", Reason: "must be lower-case letters and digits in words joined by single hyphens, at most 63 characters"},
	"servers_url_format":     {Field: "url", Reason: "must be a postgres:// URL without a password"},
	"servers_capacity_range": {Field: "capacity", Reason: "must be from 1 to 1000000"},
	"servers_status_check":   {Field: "status", Reason: "must be one of: active, draining, disabled"},
})

func translateServer(err error, name string) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "server %s not found", name)
	}
	return sqlerr.Translate(err, serverConstraints)
}

// CreateServer inserts s and its audit entry in one transaction.
func (s *Store) CreateServer(ctx context.Context, srv *controlplane.Server, passwordEnc []byte) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The timestamps are the database's, as every later read shows them.
		var row serverRow
		err := tx.Raw(`INSERT INTO servers (name, url, password_enc, capacity, status) VALUES (?, ?, ?, ?, ?) RETURNING *`,
			srv.Name, srv.URL, passwordEnc, srv.Capacity, string(srv.Status)).Scan(&row).Error
		if err != nil {
			return translateServer(err, srv.Name)
		}
		*srv = row.server()
		return audit(ctx, tx, "server.create", 0, srv.Name, controlplane.ServerDiff(nil, srv))
	})
	return translateServer(err, srv.Name)
}

// Server returns one server with its load (two indexed counts).
func (s *Store) Server(ctx context.Context, name string) (*controlplane.Server, error) {
	var row serverRow
	if err := s.db.WithContext(ctx).Where("name = ?", name).Take(&row).Error; err != nil {
		return nil, translateServer(err, name)
	}
	srv := row.server()
	loads, err := s.serverLoads(ctx, name)
	if err != nil {
		return nil, err
	}
	if l, ok := loads[name]; ok {
		srv.ServerLoad = l
	}
	return &srv, nil
}

// Servers lists every server by name with its load: one GROUP BY over the
// tenants, one over the spares, whatever the number of servers.
func (s *Store) Servers(ctx context.Context) ([]controlplane.Server, error) {
	var rows []serverRow
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, translateServer(err, "")
	}
	loads, err := s.serverLoads(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]controlplane.Server, len(rows))
	for i := range rows {
		out[i] = rows[i].server()
		if l, ok := loads[rows[i].Name]; ok {
			out[i].ServerLoad = l
		}
	}
	return out, nil
}

// ServerStates lists every server by name, with its tenants counted by
// provisioning state from the in-memory catalog rather than by a scan of
// the tenants table, whose cost grows with the fleet: what placement reads
// at every create, and the health loop every few seconds. The isolation
// and spare counts are left at 0 (neither reads them). A count a moment
// behind another replica's creates is harmless: the create checks the
// server it chose again under the server's row lock (roomOn).
func (s *Store) ServerStates(ctx context.Context) ([]controlplane.Server, error) {
	var rows []serverRow
	if err := s.db.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, translateServer(err, "")
	}
	counts := map[string]map[controlplane.ProvisionState]int{}
	s.cache.Each(func(t *controlplane.Tenant) {
		c := counts[t.ServerName()]
		if c == nil {
			c = map[controlplane.ProvisionState]int{}
			counts[t.ServerName()] = c
		}
		c[t.Provisioning]++
	})
	out := make([]controlplane.Server, len(rows))
	for i := range rows {
		out[i] = rows[i].server()
		out[i].ServerLoad = controlplane.NewServerLoad()
		for state, n := range counts[rows[i].Name] {
			out[i].Tenants[state] = n
		}
	}
	return out, nil
}

// serverLoads counts tenants (by provisioning state and isolation) and
// spares per server; only server name's when name is set.
func (s *Store) serverLoads(ctx context.Context, name string) (map[string]controlplane.ServerLoad, error) {
	var rows []struct {
		Server       string
		Provisioning string
		Isolation    string
		N            int
	}
	err := s.db.WithContext(ctx).Raw(`
		SELECT server, provisioning, isolation, count(*) AS n FROM tenants
		WHERE ? = '' OR server = ? GROUP BY 1, 2, 3
		UNION ALL
		SELECT server, '', 'spare', count(*) FROM tenant_spares
		WHERE ? = '' OR server = ? GROUP BY 1`, name, name, name, name).Scan(&rows).Error
	if err != nil {
		return nil, translateServer(err, name)
	}
	out := map[string]controlplane.ServerLoad{}
	for _, r := range rows {
		l, ok := out[r.Server]
		if !ok {
			l = controlplane.NewServerLoad()
		}
		switch controlplane.Isolation(r.Isolation) {
		case controlplane.IsolationSchema:
			l.SchemaTenants += r.N
		case controlplane.IsolationDatabase:
			l.DatabaseTenants += r.N
		default:
			l.Spares += r.N
		}
		if r.Isolation != "spare" {
			l.Tenants[controlplane.ProvisionState(r.Provisioning)] += r.N
		}
		out[r.Server] = l
	}
	return out, nil
}

// UpdateServer applies fn to the row under SELECT ... FOR UPDATE and
// records what changed, named for what it means to an operator.
func (s *Store) UpdateServer(ctx context.Context, name string, fn func(*controlplane.Server) error) (*controlplane.Server, error) {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row serverRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error; err != nil {
			return translateServer(err, name)
		}
		before := row.server()
		after := row.server()
		if err := fn(&after); err != nil {
			return err
		}
		diff := controlplane.ServerDiff(&before, &after)
		if len(diff) == 0 {
			return nil
		}
		action := "server.update"
		if _, ok := diff["status"]; ok && len(diff) == 1 {
			action = map[controlplane.ServerStatus]string{
				controlplane.ServerActive: "server.activate", controlplane.ServerDraining: "server.drain", controlplane.ServerDisabled: "server.disable",
			}[after.Status]
		}
		err := tx.Model(&row).Where("name = ?", name).Updates(map[string]any{
			"status": string(after.Status), "capacity": after.Capacity, "updated_at": gorm.Expr("now()"),
		}).Error
		if err != nil {
			return translateServer(err, name)
		}
		return audit(ctx, tx, action, 0, name, diff)
	})
	if err != nil {
		return nil, translateServer(err, name)
	}
	return s.Server(ctx, name)
}

// DeleteServer removes the row under its lock once nothing references it.
// The lock makes the count exact: a tenant or spare inserted on the server
// meanwhile holds a key-share lock on the row (its foreign key's check),
// which this waits for, and the count then sees it. The foreign keys stay
// the last word.
func (s *Store) DeleteServer(ctx context.Context, name string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row serverRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error; err != nil {
			return translateServer(err, name)
		}
		var used struct{ Tenants, Spares, Kept int }
		// Kept: the sources moves left there (a tenant's data, closed,
		// until MOVE_SOURCE_GRACE passes), and moves running from or to it.
		err := tx.Raw(`SELECT (SELECT count(*) FROM tenants WHERE server = ?) AS tenants,
			(SELECT count(*) FROM tenant_spares WHERE server = ?) AS spares,
			(SELECT count(*) FROM operations WHERE kind = 'move' AND (
				(state = 'succeeded' AND progress->>'source' = ? AND progress->>'aside' IS NOT NULL AND (progress->>'dropped') IS DISTINCT FROM 'true')
				OR (state = 'running' AND ? IN (progress->>'source', progress->>'target')))) AS kept`, name, name, name, name).Scan(&used).Error
		if err != nil {
			return translateServer(err, name)
		}
		if used.Tenants > 0 || used.Spares > 0 {
			return controlplane.Errorf(controlplane.Conflict,
				"server %s still holds %d tenants and %d spare databases: delete or move them first (lower TENANT_SPARE_DATABASES to drop spares)", name, used.Tenants, used.Spares)
		}
		if used.Kept > 0 {
			return controlplane.Errorf(controlplane.Conflict,
				"server %s still keeps %d tenant copies that moves left there (or has a move running): the reconciler drops each MOVE_SOURCE_GRACE after its move; remove the server after that", name, used.Kept)
		}
		before := row.server()
		if err := tx.Where("name = ?", name).Delete(&serverRow{}).Error; err != nil {
			return translateServer(err, name)
		}
		return audit(ctx, tx, "server.delete", 0, name, controlplane.ServerDiff(&before, nil))
	})
	var pe *controlplane.Error
	if errors.As(err, &pe) && pe.Code == controlplane.Invalid && pe.Fields == nil {
		// A foreign key's violation that slipped past the count.
		return &controlplane.Error{Code: controlplane.Conflict, Message: "server " + name + " is still in use", Err: err}
	}
	return err
}

// ServerCredentials returns the stored URL and sealed password of name.
func (s *Store) ServerCredentials(ctx context.Context, name string) (string, []byte, error) {
	var row serverRow
	if err := s.db.WithContext(ctx).Select("url", "password_enc").Where("name = ?", name).Take(&row).Error; err != nil {
		return "", nil, translateServer(err, name)
	}
	return row.URL, row.PasswordEnc, nil
}

// RegisterServer inserts server name if it is missing, then lets decide
// set its URL and sealed password under the row lock: replicas starting
// together take turns, and the second finds the work done. A write is
// audited as server.register (the first URL) or server.update.
func (s *Store) RegisterServer(ctx context.Context, name string, capacity int,
	decide func(url string, enc []byte) (string, []byte, bool, error),
) (string, bool, error) {
	var before string
	var changed bool
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Exec(`INSERT INTO servers (name, url, capacity) VALUES (?, '', ?) ON CONFLICT (name) DO NOTHING`, name, capacity).Error
		if err != nil {
			return translateServer(err, name)
		}
		var row serverRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&row).Error; err != nil {
			return translateServer(err, name)
		}
		before = row.URL
		url, enc, write, err := decide(row.URL, row.PasswordEnc)
		if err != nil || !write {
			return err
		}
		old := row.server()
		err = tx.Model(&row).Where("name = ?", name).Updates(map[string]any{
			"url": url, "password_enc": enc, "updated_at": gorm.Expr("now()"),
		}).Error
		if err != nil {
			return translateServer(err, name)
		}
		row.URL, row.PasswordEnc = url, enc
		now := row.server()
		action := "server.update"
		if before == "" {
			action = "server.register"
		}
		changed = true
		diff := controlplane.ServerDiff(&old, &now)
		if len(diff) == 0 {
			// Only the sealed password changed: say so, never what it is.
			diff["password"] = controlplane.Change{Before: "sealed", After: "sealed anew"}
		}
		return audit(ctx, tx, action, 0, name, diff)
	})
	return before, changed, err
}
