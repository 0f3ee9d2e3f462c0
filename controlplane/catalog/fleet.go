package catalog

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// A fleet run migrates thousands of tenants, each under its lifecycle lock
// and each recorded with an audit entry. One round trip per lock, per
// unlock and per record would cost the catalog more than the migrations
// cost the tenants, so the fleet takes and releases the locks of many
// tenants per statement (TryLockTenants) and records many outcomes per
// statement (RecordMigrations). The locks are the same two-key session
// locks LockTenant takes; the record is the same as RecordMigration's.

var _ controlplane.FleetCatalog = (*Store)(nil)

// TryLockTenants takes, in one statement and without waiting, the
// lifecycle locks of those of ids that nobody else holds, on one dedicated
// catalog session. held[i] says whether ids[i] was taken. The locks are
// session locks: they are released by the returned set's Unlock and
// Close, or, if this process dies, when its connection closes.
func (s *Store) TryLockTenants(ctx context.Context, ids []int64) (controlplane.TenantLocks, []bool, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, nil, translate(err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, nil, translate(err)
	}
	rows, err := conn.QueryContext(ctx, `SELECT pg_try_advisory_lock($1, k) FROM unnest($2::int[]) WITH ORDINALITY AS u(k, n) ORDER BY n`,
		TenantLockClass, lockKeys(ids))
	if err != nil {
		// Whether some locks were taken is unknown: drop the session,
		// which releases whatever it holds.
		discard(conn)
		return nil, nil, translate(err)
	}
	held := make([]bool, 0, len(ids))
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			_ = rows.Close()
			discard(conn)
			return nil, nil, translate(err)
		}
		held = append(held, ok)
	}
	if err := rows.Err(); err != nil || len(held) != len(ids) {
		_ = rows.Close()
		discard(conn)
		if err == nil {
			err = controlplane.Errorf(controlplane.Unavailable, "locking %d tenants returned %d rows", len(ids), len(held))
		}
		return nil, nil, translate(err)
	}
	locks := &tenantLocks{conn: conn, held: map[int32]int{}}
	for i, ok := range held {
		if ok {
			locks.held[int32(ids[i])]++
		}
	}
	return locks, held, nil
}

// lockKeys are the second keys of ids' lifecycle locks (see lockTenant).
func lockKeys(ids []int64) []int32 {
	keys := make([]int32, len(ids))
	for i, id := range ids {
		keys[i] = int32(id)
	}
	return keys
}

// tenantLocks is a set of lifecycle locks held by one catalog session.
type tenantLocks struct {
	mu   sync.Mutex
	conn *sql.Conn
	held map[int32]int // lock key → times taken (session locks stack)
	bad  bool          // an unlock failed: the session is dropped at Close
}

// Unlock releases the locks of ids, in one statement.
func (l *tenantLocks) Unlock(ids []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []int32
	for _, id := range ids {
		k := int32(id)
		if l.held[k] > 0 {
			l.held[k]--
			if l.held[k] == 0 {
				delete(l.held, k)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 || l.bad {
		return
	}
	// With a fresh context: the caller's may be done already.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, k) FROM unnest($2::int[]) AS u(k)`, TenantLockClass, keys); err != nil {
		// Returning a session that may still hold locks to the pool
		// would leak them: Close drops it instead, which releases them.
		l.bad = true
	}
}

// Close releases every lock still held and gives the session back.
func (l *tenantLocks) Close() {
	l.mu.Lock()
	var rest []int64
	for k, n := range l.held {
		for range n {
			rest = append(rest, int64(k))
		}
	}
	l.mu.Unlock()
	l.Unlock(rest)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bad {
		discard(l.conn)
		return
	}
	_ = l.conn.Close()
}

// RecordMigrations is RecordMigration for many tenants in one statement:
// each tenant's version, dirty flag, error and migrated_at, and an audit
// entry for each run that changed the version or failed (in the order of
// recs). found[i] says whether recs[i]'s tenant exists. A tenant recorded
// twice in recs is recorded in order, by one statement per occurrence.
func (s *Store) RecordMigrations(ctx context.Context, recs []controlplane.MigrationRecord) (found []bool, err error) {
	found = make([]bool, len(recs))
	for start := 0; start < len(recs); {
		// The longest run of distinct tenants from start: an UPDATE ...
		// FROM applies one row per tenant.
		seen := map[int64]bool{}
		end := start
		for end < len(recs) && !seen[recs[end].TenantID] {
			seen[recs[end].TenantID] = true
			end++
		}
		got, err := s.recordMigrations(ctx, recs[start:end])
		if err != nil {
			return found, err
		}
		for i := start; i < end; i++ {
			found[i] = got[recs[i].TenantID]
		}
		start = end
	}
	return found, nil
}

func (s *Store) recordMigrations(ctx context.Context, recs []controlplane.MigrationRecord) (map[int64]bool, error) {
	ids := make([]int64, len(recs))
	versions := make([]int64, len(recs))
	dirty := make([]bool, len(recs))
	errs := make([]string, len(recs))
	for i, r := range recs {
		ids[i], versions[i], dirty[i], errs[i] = r.TenantID, int64(r.Version), r.Dirty, r.Error
	}
	var rows []tenantRow
	// Plain positional parameters ($n), bound by pgx: gorm's own named
	// parameters do not mix with casts. The audit insert reads the rows as
	// they were before the update.
	err := s.db.WithContext(ctx).Raw(`
		WITH rec AS (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::text[])
				WITH ORDINALITY AS r(id, schema_version, schema_dirty, migration_error, n)
		), old AS (
			SELECT t.id, t.slug, t.schema_version, t.schema_dirty, t.migration_error,
				rec.schema_version AS new_version, rec.schema_dirty AS new_dirty, rec.migration_error AS new_error, rec.n
			FROM tenants t JOIN rec ON rec.id = t.id
		), upd AS (
			UPDATE tenants t SET schema_version = old.new_version, schema_dirty = old.new_dirty,
				migration_error = old.new_error, migrated_at = now(), version = nextval('tenant_versions')
			FROM old WHERE t.id = old.id
			RETURNING t.*
		), aud AS (
			INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
			SELECT now(), $5, 'tenant.migrate', old.id, old.slug,
				jsonb_build_object('schema_version', jsonb_build_object('before', old.schema_version, 'after', old.new_version))
				|| CASE WHEN old.new_error <> '' OR old.new_dirty THEN jsonb_build_object(
					'schema_dirty', jsonb_build_object('before', old.schema_dirty, 'after', old.new_dirty),
					'migration_error', jsonb_build_object('before', old.migration_error, 'after', old.new_error)) ELSE '{}' END
			FROM old WHERE old.schema_version <> old.new_version OR old.new_error <> '' OR old.new_dirty
			ORDER BY old.n
		)
		SELECT * FROM upd`, ids, versions, dirty, errs, controlplane.ActorFrom(ctx)).Scan(&rows).Error
	if err != nil {
		return nil, translate(err)
	}
	found := make(map[int64]bool, len(rows))
	for i := range rows {
		found[rows[i].ID] = true
		s.cache.put(rows[i].tenant())
	}
	return found, nil
}
