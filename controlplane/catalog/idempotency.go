package catalog

import (
	"context"
	"encoding/json"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// The idempotency_keys table (migrations/catalog/000007). A keyed create
// that inserts a tenant writes its row in CreateTenantLocked; the methods
// here read rows, store error outcomes and delete expired rows.

var _ controlplane.IdempotencyStore = (*Store)(nil)

// idemRow is an idempotency_keys row as read.
type idemRow struct {
	Actor       string
	Key         string
	Fingerprint []byte
	TenantID    *int64
	Error       *string
	CreatedAt   time.Time
}

// storedError is the JSON of a stored client error: the error body the API
// answered, nothing more.
type storedError struct {
	Code    controlplane.Code `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

func (r *idemRow) record() (*controlplane.IdempotencyRecord, error) {
	rec := &controlplane.IdempotencyRecord{Actor: r.Actor, Key: r.Key, CreatedAt: r.CreatedAt}
	copy(rec.Fingerprint[:], r.Fingerprint)
	if r.TenantID != nil {
		rec.TenantID = *r.TenantID
	}
	if r.Error != nil {
		var e storedError
		if err := json.Unmarshal([]byte(*r.Error), &e); err != nil {
			return nil, translate(err)
		}
		rec.Err = &controlplane.Error{Code: e.Code, Message: e.Message, Fields: e.Fields}
	}
	return rec, nil
}

// sweepBatch is how many expired keys one lookup deletes besides its own:
// more than a lookup adds, so the table holds about a TTL's worth of keys
// without a sweeper of its own, and few enough to stay a short statement.
const sweepBatch = 100

// IdempotencyRecord returns actor's record of key unless it is older than
// ttl. On the way it deletes that key's expired record (so the key can be
// used afresh: its row would fail the new insert) and up to sweepBatch
// other expired ones; rows another request is deleting are skipped, not
// waited for. Age is by the catalog's clock, as created_at is.
func (s *Store) IdempotencyRecord(ctx context.Context, actor, key string, ttl time.Duration) (*controlplane.IdempotencyRecord, error) {
	var rows []idemRow
	err := s.db.WithContext(ctx).Raw(`
		WITH expired AS (
			DELETE FROM idempotency_keys d
			WHERE d.created_at < now() - make_interval(secs => $3)
			  AND ((d.actor = $1 AND d.key = $2) OR (d.actor, d.key) IN (
				SELECT actor, key FROM idempotency_keys
				WHERE created_at < now() - make_interval(secs => $3)
				ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED))
		)
		SELECT actor, key, fingerprint, tenant_id, error::text AS error, created_at FROM idempotency_keys
		WHERE actor = $1 AND key = $2 AND created_at >= now() - make_interval(secs => $3)`,
		actor, key, ttl.Seconds(), sweepBatch).Scan(&rows).Error
	if err != nil || len(rows) == 0 {
		return nil, translate(err)
	}
	return rows[0].record()
}

// RecordIdempotencyError stores rec, an error outcome, unless actor's key
// has a record already (say, of a concurrent request with the key, whose
// insert this one waits for): it returns the record stored and whether it
// is rec.
func (s *Store) RecordIdempotencyError(ctx context.Context, rec *controlplane.IdempotencyRecord) (*controlplane.IdempotencyRecord, bool, error) {
	raw, err := json.Marshal(storedError{Code: rec.Err.Code, Message: rec.Err.Message, Fields: rec.Err.Fields})
	if err != nil {
		return nil, false, err
	}
	// Twice at most: the row in the way may be deleted as expired between
	// the insert and the read.
	for range 2 {
		var created []struct{ CreatedAt time.Time }
		err = s.db.WithContext(ctx).Raw(`
			INSERT INTO idempotency_keys (actor, key, fingerprint, error) VALUES ($1, $2, $3, $4::jsonb)
			ON CONFLICT (actor, key) DO NOTHING
			RETURNING created_at`, rec.Actor, rec.Key, rec.Fingerprint[:], string(raw)).Scan(&created).Error
		if err != nil {
			return nil, false, translate(err)
		}
		if len(created) == 1 {
			out := *rec
			out.CreatedAt = created[0].CreatedAt
			return &out, true, nil
		}
		// A new statement, so a new snapshot: it sees the row the insert
		// found in its way, committed by then.
		var rows []idemRow
		err = s.db.WithContext(ctx).Raw(`
			SELECT actor, key, fingerprint, tenant_id, error::text AS error, created_at FROM idempotency_keys
			WHERE actor = $1 AND key = $2`, rec.Actor, rec.Key).Scan(&rows).Error
		if err != nil {
			return nil, false, translate(err)
		}
		if len(rows) == 1 {
			prev, err := rows[0].record()
			return prev, false, err
		}
	}
	return nil, false, controlplane.Errorf(controlplane.Unavailable, "the %s record changed while it was written; retry the request", controlplane.IdempotencyKeyHeader)
}
