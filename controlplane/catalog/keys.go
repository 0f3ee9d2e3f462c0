package catalog

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

var _ controlplane.KeyStore = (*Store)(nil)

// keyRow is the tenant_api_keys table (migrations/catalog/000004).
type keyRow struct {
	ID         int64
	TenantID   int64
	Name       string
	Prefix     string
	Hash       []byte
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

func (keyRow) TableName() string { return "tenant_api_keys" }

func (r *keyRow) key() controlplane.APIKey {
	return controlplane.APIKey{ID: r.ID, TenantID: r.TenantID, Name: r.Name, Prefix: r.Prefix, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt}
}

// KeyCache holds every tenant API key's hash in memory, so checking a key
// costs a SHA-256 and a map lookup, never a query. Uses are remembered
// and written back in batches (FlushKeyUse), not one write per request.
type KeyCache struct {
	mu     sync.RWMutex
	byHash map[[32]byte]keyEntry
	byID   map[int64][32]byte
	used   map[int64]time.Time // key id → last use, not yet flushed
}

type keyEntry struct{ tenantID, keyID int64 }

func newKeyCache() *KeyCache {
	return &KeyCache{byHash: map[[32]byte]keyEntry{}, byID: map[int64][32]byte{}, used: map[int64]time.Time{}}
}

// KeyTenant returns the tenant of a presented key.
func (k *KeyCache) KeyTenant(key string) (tenantID, keyID int64, ok bool) {
	h := controlplane.HashKey(key)
	k.mu.RLock()
	e, ok := k.byHash[h]
	k.mu.RUnlock()
	return e.tenantID, e.keyID, ok
}

// MarkUsed notes a successful use of a key, for its last_used_at.
func (k *KeyCache) MarkUsed(keyID int64) {
	k.mu.Lock()
	k.used[keyID] = time.Now()
	k.mu.Unlock()
}

func (k *KeyCache) put(r *keyRow) {
	var h [32]byte
	copy(h[:], r.Hash)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.byHash[h] = keyEntry{tenantID: r.TenantID, keyID: r.ID}
	k.byID[r.ID] = h
}

func (k *KeyCache) remove(id int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h, ok := k.byID[id]; ok {
		delete(k.byHash, h)
		delete(k.byID, id)
	}
	delete(k.used, id)
}

func (k *KeyCache) load(rows []keyRow) {
	next := newKeyCache()
	for i := range rows {
		next.put(&rows[i])
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.byHash, k.byID = next.byHash, next.byID
}

// Keys returns the store's key cache (for the HTTP layer's key checks).
func (s *Store) Keys() *KeyCache { return s.keys }

// loadKeys reads every key into the cache.
func (s *Store) loadKeys(ctx context.Context) error {
	var rows []keyRow
	if err := s.db.WithContext(ctx).Select("id", "tenant_id", "hash").Find(&rows).Error; err != nil {
		return translate(err)
	}
	s.keys.load(rows)
	return nil
}

// refreshKey reloads one key after a change notification.
func (s *Store) refreshKey(ctx context.Context, id int64) error {
	var rows []keyRow
	if err := s.db.WithContext(ctx).Select("id", "tenant_id", "hash").Where("id = ?", id).Find(&rows).Error; err != nil {
		return translate(err)
	}
	if len(rows) == 0 {
		s.keys.remove(id)
		return nil
	}
	s.keys.put(&rows[0])
	return nil
}

// CreateAPIKey stores a new key's hash for the tenant, audited, in one
// statement. A tenant that does not exist is NotFound (the foreign key).
func (s *Store) CreateAPIKey(ctx context.Context, tenantID int64, name, prefix string, hash [32]byte) (*controlplane.APIKey, error) {
	var row keyRow
	err := s.db.WithContext(ctx).Raw(`
		WITH ins AS (
			INSERT INTO tenant_api_keys (tenant_id, name, prefix, hash, created_at)
			VALUES ($1, $2, $3, $4, date_trunc('microseconds', now()))
			RETURNING *
		), aud AS (
			INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
			SELECT now(), $5, 'key.create', tenant_id, 'key ' || id || ' (' || prefix || '…)', jsonb_build_object('name', jsonb_build_object('before', null, 'after', name))
			FROM ins
		)
		SELECT * FROM ins`, tenantID, name, prefix, hash[:], controlplane.ActorFrom(ctx)).Scan(&row).Error
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.ConstraintName == "tenant_api_keys_tenant_id_fkey" {
		return nil, controlplane.Errorf(controlplane.NotFound, "tenant %d not found", tenantID)
	}
	if err != nil {
		return nil, translate(err)
	}
	s.keys.put(&row)
	k := row.key()
	return &k, nil
}

// APIKeys lists a tenant's keys, oldest first, without secrets.
func (s *Store) APIKeys(ctx context.Context, tenantID int64) ([]controlplane.APIKey, error) {
	s.FlushKeyUse(ctx) // so last_used_at is current
	var rows []keyRow
	if err := s.db.WithContext(ctx).Omit("hash").Where("tenant_id = ?", tenantID).Order("id").Find(&rows).Error; err != nil {
		return nil, translate(err)
	}
	out := make([]controlplane.APIKey, len(rows))
	for i := range rows {
		out[i] = rows[i].key()
	}
	return out, nil
}

// DeleteAPIKey revokes a key: it stops working on the next request here,
// and on other replicas as soon as they hear of it (NOTIFY).
func (s *Store) DeleteAPIKey(ctx context.Context, tenantID, keyID int64) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row keyRow
		res := tx.Where("id = ? AND tenant_id = ?", keyID, tenantID).Delete(&row)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return controlplane.Errorf(controlplane.NotFound, "tenant %d has no key %d", tenantID, keyID)
		}
		return audit(ctx, tx, "key.revoke", tenantID, "key "+itoa(keyID), nil)
	})
	if err != nil {
		return translate(err)
	}
	s.keys.remove(keyID)
	return nil
}

// FlushKeyUse writes the remembered key uses to last_used_at, in one
// statement. serve calls it periodically.
func (s *Store) FlushKeyUse(ctx context.Context) {
	s.keys.mu.Lock()
	used := s.keys.used
	s.keys.used = map[int64]time.Time{}
	s.keys.mu.Unlock()
	if len(used) == 0 {
		return
	}
	// Array literals, since gorm would expand a Go slice into a list.
	ids, ats := make([]string, 0, len(used)), make([]string, 0, len(used))
	for id, at := range used {
		ids, ats = append(ids, itoa(id)), append(ats, `"`+at.UTC().Format(time.RFC3339Nano)+`"`)
	}
	err := s.db.WithContext(ctx).Exec(`UPDATE tenant_api_keys k SET last_used_at = v.at
		FROM unnest(?::bigint[], ?::timestamptz[]) AS v(id, at)
		WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)`,
		"{"+strings.Join(ids, ",")+"}", "{"+strings.Join(ats, ",")+"}").Error
	if err != nil {
		// Not worth failing anything for; the next flush tries again.
		s.keys.mu.Lock()
		for id, at := range used {
			if _, newer := s.keys.used[id]; !newer {
				s.keys.used[id] = at
			}
		}
		s.keys.mu.Unlock()
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
