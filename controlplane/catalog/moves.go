package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/laracopilot/controlplane/controlplane"
)

// A move's catalog writes (docs/OPERATIONS.md, "Moving a tenant"). Each
// bumps the tenant's version, so the tenants trigger notifies every
// replica, which reloads the tenant (Listen) and wakes the requests its
// cutover holds (Cache.Changed).

// HoldTenant sets (until non-nil) or clears tenant id's cutover hold.
func (s *Store) HoldTenant(ctx context.Context, id int64, until *time.Time) (*controlplane.Tenant, error) {
	return s.moveWrite(ctx, id, `UPDATE tenants SET held_until = $2, version = nextval('tenant_versions') WHERE id = $1`, until)
}

// SetMoving marks ready tenant id as moving (an offline move: 503 until it
// ends), or a moving one ready again (the move undone).
func (s *Store) SetMoving(ctx context.Context, id int64, moving bool) (*controlplane.Tenant, error) {
	from, to := controlplane.ProvisionReady, controlplane.ProvisionMoving
	if !moving {
		from, to = to, from
	}
	t, err := s.moveWrite(ctx, id, `UPDATE tenants SET provisioning = $2, updated_at = now(), version = nextval('tenant_versions')
		WHERE id = $1 AND provisioning IN ($2, $3)`, string(to), string(from))
	if controlplane.ErrorCode(err) == controlplane.NotFound {
		return nil, controlplane.Errorf(controlplane.Conflict, "tenant %d is not %s", id, from)
	}
	return t, err
}

// moveWrite runs update (on tenant id, $1) and puts the tenant it leaves
// in the cache.
func (s *Store) moveWrite(ctx context.Context, id int64, update string, args ...any) (*controlplane.Tenant, error) {
	var row tenantRow
	err := s.pgxTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, update, append([]any{id}, args...)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return controlplane.Errorf(controlplane.NotFound, "tenant %d not found", id)
		}
		row, err = scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns("t")+` FROM tenants t WHERE id = $1`, id))
		return err
	})
	if err != nil {
		return nil, translate(err)
	}
	t := row.tenant()
	s.cache.put(t)
	return &t, nil
}

// MoveTenant records tenant id on server to instead of from, ready and
// not held, with its audit entry: the commit point of a move. The target
// must have room (checked under its row lock, as a create is); a tenant no
// longer on from is a Conflict (nothing changes).
func (s *Store) MoveTenant(ctx context.Context, id int64, from, to string) (*controlplane.Tenant, error) {
	diff, err := json.Marshal(map[string]controlplane.Change{"server": {Before: from, After: to}})
	if err != nil {
		return nil, err
	}
	var row tenantRow
	err = s.pgxTx(ctx, func(tx pgx.Tx) error {
		if err := roomOn(ctx, tx, to); err != nil {
			return err
		}
		var err error
		row, err = scanTenant(tx.QueryRow(ctx, `
			WITH upd AS (
				UPDATE tenants SET server = $3, held_until = NULL, provisioning = 'ready', updated_at = now(), version = nextval('tenant_versions')
				WHERE id = $1 AND server = $2 AND provisioning IN ('ready', 'moving')
				RETURNING *
			), aud AS (
				INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
				SELECT now(), $4, 'tenant.move', id, slug, $5::jsonb FROM upd
			)
			SELECT `+tenantColumns("upd")+` FROM upd`, id, from, to, controlplane.ActorFrom(ctx), string(diff)))
		if errors.Is(err, pgx.ErrNoRows) {
			return controlplane.Errorf(controlplane.Conflict, "tenant %d is no longer on server %s", id, from)
		}
		return err
	})
	if err != nil {
		return nil, translate(err)
	}
	t := row.tenant()
	s.cache.put(t)
	return &t, nil
}

// pgxTx runs fn in a transaction on a pgx connection of the catalog's pool
// (the statements that share create.go's pgx helpers, such as roomOn).
func (s *Store) pgxTx(ctx context.Context, fn func(pgx.Tx) error) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		return pgx.BeginFunc(ctx, dc.(*stdlib.Conn).Conn(), fn)
	})
}
