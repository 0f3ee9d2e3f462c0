package catalog

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/laracopilot/controlplane/controlplane"
)

// Creating a tenant talks to the catalog in three round trips, all on one
// session of its own that holds the tenant's lifecycle lock throughout:
//
//  1. reserve the id (or claim a spare database's), take the lock, insert
//     the row as pending with its audit entry: one statement;
//  2. (the tenant's database or schema is made elsewhere)
//  3. mark the row ready and store the first API key, both audited, in one
//     transaction, then release the lock: one pipeline (BEGIN, the
//     statement, COMMIT, unlock), so the unlock runs after the commit.
//
// Rows come from RETURNING; nothing is read back.

// tenantColumns are the tenants columns in tenantRow's order, for RETURNING
// and scanTenant.
func tenantColumns(t string) string {
	return strings.NewReplacer("t.", t+".").Replace(`t.id, t.name, t.slug, t.domain, t.status, t.timezone, t.max_extensions, t.settings::text,
		t.isolation, t.db_name, t.provisioning, t.schema_version, t.last_error, t.schema_dirty, t.migrated_at, t.migration_error,
		t.version, t.created_at, t.updated_at, t.server, t.deleted_at, t.held_until`)
}

func scanTenant(row pgx.Row, extra ...any) (tenantRow, error) {
	var r tenantRow
	dest := []any{&r.ID, &r.Name, &r.Slug, &r.Domain, &r.Status, &r.Timezone, &r.MaxExtensions, &r.Settings, &r.Isolation,
		&r.DBName, &r.Provisioning, &r.SchemaVersion, &r.LastError, &r.SchemaDirty, &r.MigratedAt, &r.MigrationErr,
		&r.Version, &r.CreatedAt, &r.UpdatedAt, &r.Server, &r.DeletedAt, &r.HeldUntil}
	return r, row.Scan(append(dest, extra...)...)
}

// lockKeyOfID is the second key of a tenant's lifecycle lock in SQL, for a
// column named id: the low 32 bits of the id as a signed integer, as
// int32(id) in lockTenant.
const lockKeyOfID = `id::bit(32)::int4`

// CreateTenantLocked reserves t's id, takes its lifecycle lock and inserts t
// as pending with its audit entry, in one statement on a session of its
// own. With o.SpareTemplate set it first tries to claim a ready spare
// database of that template: the spare's catalog entry turns into the
// tenant's row in the same statement, so a spare is claimed by exactly one
// tenant or by none. t is filled from the inserted row.
func (s *Store) CreateTenantLocked(ctx context.Context, t *controlplane.Tenant, o controlplane.CreateOptions) (controlplane.TenantLock, bool, error) {
	ins, err := s.newTenantInsert(ctx, t, o)
	if err != nil {
		return nil, false, err
	}
	claimed := false
	var row tenantRow
	ok := false
	if o.SpareTemplate != "" {
		row, ok, err = ins.run(ctx, fromSpare, o.SpareTemplate)
		claimed = ok
	}
	if err == nil && !ok {
		row, ok, err = ins.run(ctx, fromNewID)
		if err == nil && !ok {
			err = controlplane.Errorf(controlplane.Conflict, "the tenant id just reserved is locked by another request; try again")
		}
	}
	if err != nil {
		// The statement may have taken the lock before it failed (session
		// locks outlive a rolled-back statement).
		ins.lock.release(`SELECT pg_advisory_unlock_all()`)
		return nil, false, translate(err)
	}
	*t = row.tenant()
	ins.lock.id = t.ID
	s.cache.put(*t)
	return ins.lock, claimed, nil
}

// Where a new tenant's id and database name come from: the first CTE of
// tenantInsert's statement, named src, yielding (id, db_name) only when the
// lifecycle lock on that id was taken ($1 is the lock class, $12 the name
// prefix, $13 the server).
const (
	// fromSpare claims the oldest ready spare nobody else is claiming (SKIP
	// LOCKED), made from the current template ($14) under the current name
	// prefix, and only if its lifecycle lock is free (a reconciler dropping
	// it holds it). Its catalog entry is deleted in the same statement that
	// inserts the tenant: a spare goes to exactly one tenant or to none.
	fromSpare = `pick AS (
		SELECT id, db_name FROM tenant_spares
		WHERE state = 'ready' AND template = $14 AND server = $13 AND db_name = $12::text || id
		ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
	), locked AS (
		SELECT id, db_name FROM pick WHERE pg_try_advisory_lock($1, ` + lockKeyOfID + `)
	), src AS (
		DELETE FROM tenant_spares s USING locked WHERE s.id = locked.id RETURNING s.id, s.db_name
	)`
	// fromNewID reserves a fresh id from the tenants sequence. Its lock can
	// only be held already by a reconciler working on a leftover of that
	// id, in which case nothing is inserted.
	fromNewID = `src AS (
		SELECT id, $12::text || id AS db_name
		FROM (SELECT nextval(pg_get_serial_sequence('tenants', 'id')) AS id) r
		WHERE pg_try_advisory_lock($1, ` + lockKeyOfID + `)
	)`
)

// tenantInsert is one create's insert: the session holding the lock, and
// the statement's arguments, tried with one source of id and then maybe
// another.
type tenantInsert struct {
	lock   *sessionLock
	args   []any
	server string
	idem   *controlplane.IdempotencyRecord
}

// newTenantInsert takes a session of its own from the pool for the create.
func (s *Store) newTenantInsert(ctx context.Context, t *controlplane.Tenant, o controlplane.CreateOptions) (*tenantInsert, error) {
	diff, err := json.Marshal(controlplane.TenantDiff(nil, t))
	if err != nil {
		return nil, err
	}
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, translate(err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, translate(err)
	}
	server := cmp.Or(o.Server, controlplane.DefaultServer)
	return &tenantInsert{
		lock:   &sessionLock{store: s, conn: conn},
		server: server,
		idem:   o.Idempotency,
		args: []any{TenantLockClass, t.Name, t.Slug, t.Domain, string(t.Status), t.Timezone, t.MaxExtensions, string(t.Settings),
			string(t.Isolation), controlplane.ActorFrom(ctx), string(diff), o.DBPrefix, server},
	}, nil
}

// run inserts the tenant as pending, its audit entry and its idempotency
// key in one statement, with its id from source (extra: source's own
// arguments), after checking its server has room. ok is false when source
// yielded no id (no spare, or the lock was held).
func (in *tenantInsert) run(ctx context.Context, source string, extra ...any) (row tenantRow, ok bool, err error) {
	a := append(append([]any{}, in.args...), extra...)
	idem := ""
	if k := in.idem; k != nil {
		// In the same statement as the tenant: a key is never without
		// its tenant, nor a tenant of a keyed create without its key.
		// A concurrent insert of the same key makes this one wait for
		// its commit, then fail on the primary key, tenant and all.
		n := len(a)
		idem = fmt.Sprintf(`, idem AS (
			INSERT INTO idempotency_keys (actor, key, fingerprint, tenant_id)
			SELECT $%d, $%d, $%d, id FROM ins
		)`, n+1, n+2, n+3)
		a = append(a, k.Actor, k.Key, k.Fingerprint[:])
	}
	err = in.lock.pgx(func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if err := roomOn(ctx, tx, in.server); err != nil {
				return err
			}
			var err error
			row, err = scanTenant(tx.QueryRow(ctx, `
			WITH `+source+`,
			ins AS (
				INSERT INTO tenants (id, name, slug, domain, status, timezone, max_extensions, settings, isolation, db_name, provisioning, server)
				SELECT id, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, db_name, 'pending', $13 FROM src
				RETURNING *
			), aud AS (
				INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
				SELECT now(), $10, 'tenant.create', id, slug, $11::jsonb FROM ins
			)`+idem+`
			SELECT `+tenantColumns("ins")+` FROM ins`, a...))
			return err
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return row, false, nil
	}
	return row, err == nil, err
}

// roomOn checks, in tx, that server may take one more tenant: registered,
// active, and below its capacity. It locks the server's row first and
// counts after, in a statement of its own (a newer snapshot), so creates
// placed on the same server at once take turns and the last one sees every
// tenant committed before it: none overfills the server.
func roomOn(ctx context.Context, tx pgx.Tx, server string) error {
	var status string
	var capacity int
	err := tx.QueryRow(ctx, `SELECT status, capacity FROM servers WHERE name = $1 FOR UPDATE`, server).Scan(&status, &capacity)
	if errors.Is(err, pgx.ErrNoRows) {
		return controlplane.FieldError("server", "no tenant server is named "+server)
	}
	if err != nil {
		return err
	}
	if controlplane.ServerStatus(status) != controlplane.ServerActive {
		return controlplane.Errorf(controlplane.Conflict, "tenant server %s is %s: it takes no new tenants", server, status)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenants WHERE server = $1`, server).Scan(&n); err != nil {
		return err
	}
	if n >= capacity {
		return controlplane.Errorf(controlplane.NoCapacity, "tenant server %s is full: %d tenants, its capacity %d", server, n, capacity)
	}
	return nil
}

// sessionLock is a tenant's lifecycle lock held on conn.
type sessionLock struct {
	store *Store
	conn  *sql.Conn // nil once released
	id    int64
}

func (l *sessionLock) pgx(fn func(*pgx.Conn) error) error {
	return l.conn.Raw(func(dc any) error { return fn(dc.(*stdlib.Conn).Conn()) })
}

// release runs stmt (an unlock) with a fresh context and returns the
// session to the pool, or drops the session if the unlock failed, which
// releases its locks.
func (l *sessionLock) release(stmt string, args ...any) {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.conn.ExecContext(ctx, stmt, args...); err != nil {
		discard(l.conn)
	} else {
		_ = l.conn.Close()
	}
	l.conn = nil
}

// Unlock releases the lock.
func (l *sessionLock) Unlock() {
	l.release(`SELECT pg_advisory_unlock($1, $2)`, TenantLockClass, int32(l.id))
}

// FinishCreate marks the tenant ready at version with its first API key,
// both audited, in one transaction, and releases the lock after the
// commit: one pipelined round trip. On failure the lock stays held and the
// row pending.
func (l *sessionLock) FinishCreate(ctx context.Context, version uint, key controlplane.KeyRecord) (*controlplane.Tenant, *controlplane.APIKey, error) {
	if l.conn == nil {
		return nil, nil, errors.New("tenant lock already released")
	}
	var row tenantRow
	var k keyRow
	err := l.pgx(func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		b.Queue(`
			WITH upd AS (
				UPDATE tenants SET provisioning = 'ready', schema_version = $2, last_error = '', schema_dirty = false,
					migration_error = '', migrated_at = now(), updated_at = now(), version = nextval('tenant_versions')
				WHERE id = $1 AND provisioning = 'pending'
				RETURNING *
			), k AS (
				INSERT INTO tenant_api_keys (tenant_id, name, prefix, hash, created_at)
				SELECT id, $3, $4, $5, date_trunc('microseconds', now()) FROM upd
				RETURNING *
			), ka AS (
				INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
				SELECT now(), $6, 'key.create', tenant_id, 'key ' || id || ' (' || prefix || '…)', jsonb_build_object('name', jsonb_build_object('before', null, 'after', name))
				FROM k
			)
			SELECT `+tenantColumns("upd")+`, k.id, k.created_at FROM upd, k`,
			l.id, int64(version), key.Name, key.Prefix, key.Hash[:], controlplane.ActorFrom(ctx))
		b.Queue(`COMMIT`)
		b.Queue(`SELECT pg_advisory_unlock($1, $2)`, TenantLockClass, int32(l.id))
		br := c.SendBatch(ctx, b)
		_, err := br.Exec()
		if err == nil {
			row, err = scanTenant(br.QueryRow(), &k.ID, &k.CreatedAt)
		}
		if err == nil {
			_, err = br.Exec()
		}
		if err == nil {
			_, err = br.Exec()
		}
		return errors.Join(err, br.Close())
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Nothing was written; the COMMIT and the unlock ran.
		_ = l.conn.Close()
		l.conn = nil
		return nil, nil, controlplane.Errorf(controlplane.Conflict, "tenant %d is no longer pending", l.id)
	}
	if err != nil {
		// End the failed transaction, keeping the session (and its lock).
		rbCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, rbErr := l.conn.ExecContext(rbCtx, `ROLLBACK`); rbErr != nil && !isNoTransaction(rbErr) {
			discard(l.conn)
			l.conn = nil
		}
		return nil, nil, translate(err)
	}
	_ = l.conn.Close()
	l.conn = nil
	t := row.tenant()
	l.store.cache.put(t)
	k.TenantID, k.Name, k.Prefix, k.Hash = t.ID, key.Name, key.Prefix, key.Hash[:]
	l.store.keys.put(&k)
	ak := k.key()
	return &t, &ak, nil
}

// isNoTransaction reports the warning-free case of ROLLBACK outside a
// transaction (PostgreSQL only warns; kept for drivers that error).
func isNoTransaction(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.NoActiveSQLTransaction
}
