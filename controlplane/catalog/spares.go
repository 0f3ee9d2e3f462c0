package catalog

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/laracopilot/controlplane/controlplane"
)

var _ controlplane.SpareCatalog = (*SpareStore)(nil)

// SpareStore is the catalog's record of one tenant server's spare
// databases: each server keeps spares of its own, claimed only by creates
// placed there.
type SpareStore struct {
	*Store
	server string
}

// SparesOn returns the spares of tenant server name.
func (s *Store) SparesOn(name string) *SpareStore { return &SpareStore{Store: s, server: name} }

// spareFillKey is the transaction lock that serialises ReserveSpare across
// replicas, so that they count and add spares one at a time.
const spareFillKey = 0x4c43_5350 // "LCSP"

// ReserveSpare reserves an id for a new spare of template, unless want
// spares of it are ready or being made already. The spare's row is written
// in state making while this session takes the id's lifecycle lock, held
// until unlock is called: the reconciler leaves a spare alone while its
// maker is alive.
func (s *SpareStore) ReserveSpare(ctx context.Context, template, dbPrefix string, want int) (int64, func(), bool, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return 0, nil, false, translate(err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return 0, nil, false, translate(err)
	}
	lock := &sessionLock{store: s.Store, conn: conn}
	var id int64
	err = lock.pgx(func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, spareFillKey); err != nil {
				return err
			}
			// The count reads a snapshot taken after the lock: it sees every
			// spare another replica added before letting go of it.
			return tx.QueryRow(ctx, `
				INSERT INTO tenant_spares (id, db_name, template, server)
				SELECT id, $2::text || id, $3, $5
				FROM (SELECT nextval(pg_get_serial_sequence('tenants', 'id')) AS id
				      WHERE (SELECT count(*) FROM tenant_spares WHERE template = $3 AND server = $5) < $4) r
				WHERE pg_try_advisory_lock($1, `+lockKeyOfID+`)
				RETURNING id`, TenantLockClass, dbPrefix, template, want, s.server).Scan(&id)
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		lock.release(`SELECT pg_advisory_unlock_all()`)
		return 0, nil, false, nil
	}
	if err != nil {
		lock.release(`SELECT pg_advisory_unlock_all()`)
		return 0, nil, false, translate(err)
	}
	lock.id = id
	return id, lock.Unlock, true, nil
}

// SpareReady records that spare id is complete: it may be claimed from now on.
func (s *SpareStore) SpareReady(ctx context.Context, id int64) error {
	res := s.db.WithContext(ctx).Exec(`UPDATE tenant_spares SET state = 'ready', updated_at = now() WHERE id = ?`, id)
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return controlplane.Errorf(controlplane.NotFound, "spare %d not found", id)
	}
	return nil
}

// Spares lists the server's spares, by id.
func (s *SpareStore) Spares(ctx context.Context) ([]controlplane.Spare, error) {
	var out []controlplane.Spare
	err := s.db.WithContext(ctx).Raw(`SELECT id, db_name, template, state FROM tenant_spares WHERE server = ? ORDER BY id`, s.server).Scan(&out).Error
	return out, translate(err)
}

// TakeSpare removes spare id's row if it is still a spare the reconciler
// may drop: one of another template than keep ("": any), or one whose maker
// died (the caller holds its lifecycle lock, so a live maker or claimer
// cannot be at work).
// It reports whether the row was removed; its database is the caller's to
// drop.
func (s *SpareStore) TakeSpare(ctx context.Context, id int64, keep string) (bool, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM tenant_spares WHERE id = ? AND (state = 'making' OR template <> ?)`, id, keep)
	return res.RowsAffected > 0, translate(res.Error)
}

// DeleteSpare removes spare id's row whatever its state (its maker gave up).
func (s *SpareStore) DeleteSpare(ctx context.Context, id int64) error {
	return translate(s.db.WithContext(ctx).Exec(`DELETE FROM tenant_spares WHERE id = ?`, id).Error)
}

// UsedIDs returns which of ids belong to a tenant or a spare on this
// server, read in one snapshot (a claim moves an id from one table to the
// other atomically). A spare database left on this server under an id
// whose tenant lives on another server is not used here.
func (s *SpareStore) UsedIDs(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	var used []int64
	err := s.db.WithContext(ctx).Raw(`SELECT id FROM tenants WHERE id IN ? AND server = ? UNION SELECT id FROM tenant_spares WHERE id IN ? AND server = ?`, ids, s.server, ids, s.server).Scan(&used).Error
	for _, id := range used {
		out[id] = true
	}
	return out, translate(err)
}
