package catalog

import (
	"context"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// The console_sessions table (migrations/catalog/000012): the fleet
// console's operator sessions.

var _ controlplane.ConsoleSessionStore = (*Store)(nil)

type sessionRow struct {
	IDHash    []byte
	TokenMAC  []byte
	Actor     string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// The statements use $n placeholders, as the other raw ones here do:
// gorm's ? would expand a []byte argument into a list.

// CreateConsoleSession inserts s, and deletes the expired sessions in the
// same statement: logins are rare, so the table never needs a sweeper of
// its own.
func (s *Store) CreateConsoleSession(ctx context.Context, sess controlplane.ConsoleSession) error {
	err := s.db.WithContext(ctx).Exec(`
		WITH expired AS (DELETE FROM console_sessions WHERE expires_at <= now())
		INSERT INTO console_sessions (id_hash, token_mac, actor, expires_at) VALUES ($1, $2, $3, $4)`,
		sess.IDHash[:], sess.TokenMAC[:], sess.Actor, sess.ExpiresAt).Error
	return translate(err)
}

// ConsoleSession reads an unexpired session; expiry is by the catalog's
// clock, so replicas whose clocks differ agree on it.
func (s *Store) ConsoleSession(ctx context.Context, idHash [32]byte) (*controlplane.ConsoleSession, error) {
	var rows []sessionRow
	err := s.db.WithContext(ctx).Raw(`
		SELECT id_hash, token_mac, actor, created_at, expires_at FROM console_sessions
		WHERE id_hash = $1 AND expires_at > now()`, idHash[:]).Scan(&rows).Error
	if err != nil {
		return nil, translate(err)
	}
	if len(rows) == 0 {
		return nil, controlplane.Errorf(controlplane.NotFound, "no such console session")
	}
	r := rows[0]
	out := &controlplane.ConsoleSession{Actor: r.Actor, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
	copy(out.IDHash[:], r.IDHash)
	copy(out.TokenMAC[:], r.TokenMAC)
	return out, nil
}

// DeleteConsoleSession ends a session on every replica at once.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash [32]byte) error {
	return translate(s.db.WithContext(ctx).Exec(`DELETE FROM console_sessions WHERE id_hash = $1`, idHash[:]).Error)
}
