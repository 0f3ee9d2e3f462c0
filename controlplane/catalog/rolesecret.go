package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"

	"github.com/laracopilot/controlplane/controlplane"
)

var _ controlplane.RolePasswordCatalog = (*Store)(nil)

// roleSecretSize is the size of a generated role secret: as long as the
// HMAC-SHA256 key it becomes, so nothing is gained by guessing it rather
// than the passwords.
const roleSecretSize = 32

// GeneratedRoleSecret returns the role secret kept in the catalog, made
// (from crypto/rand) by the first caller that finds none. Replicas starting
// together may both make one: the insert keeps the first and ignores the
// others, and every caller returns what a read after its insert finds, so
// all agree. The secret never leaves this process: it is not logged and no
// error carries it.
func (s *Store) GeneratedRoleSecret(ctx context.Context) ([]byte, error) {
	db, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	read := func() ([]byte, error) {
		var secret []byte
		err := db.QueryRowContext(ctx, `SELECT secret FROM tenant_role_secret`).Scan(&secret)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		return secret, translate(err)
	}
	secret, err := read()
	if err != nil || secret != nil {
		return secret, err
	}
	fresh := make([]byte, roleSecretSize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO tenant_role_secret (secret) VALUES ($1) ON CONFLICT DO NOTHING`, fresh); err != nil {
		return nil, translate(err)
	}
	// A new statement, hence a new snapshot: it sees the row of whichever
	// replica won, even one that committed while our insert waited for it.
	if secret, err = read(); err == nil && secret == nil {
		err = errors.New("tenant_role_secret is empty right after an insert")
	}
	return secret, err
}

// rolePasswordsKey is the session lock role password rotations run under,
// so that replicas starting together take turns and the second finds the
// work done.
const rolePasswordsKey = 0x4c43_5250 // "LCRP"

// LockRolePasswords waits for the catalog-wide role password lock and
// holds it on a connection of its own until unlock is called (or this
// process dies).
func (s *Store) LockRolePasswords(ctx context.Context) (func(), error) {
	db, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, translate(err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, rolePasswordsKey); err != nil {
		// Taken or not (a wait cut short): the session goes, and the lock
		// with it.
		discard(conn)
		return nil, translate(err)
	}
	lock := &sessionLock{store: s, conn: conn}
	return func() { lock.release(`SELECT pg_advisory_unlock($1)`, rolePasswordsKey) }, nil
}

// RolePasswordsTag returns the tag of the secret every tenant role's
// password was last set from, "" if none was ever recorded.
func (s *Store) RolePasswordsTag(ctx context.Context) (string, error) {
	var tags []string
	err := s.db.WithContext(ctx).Raw(`SELECT secret_tag FROM tenant_role_passwords`).Scan(&tags).Error
	if err != nil || len(tags) == 0 {
		return "", translate(err)
	}
	return tags[0], nil
}

// SetRolePasswordsTag records that every tenant role's password (roles of
// them) was set from the secret of tag.
func (s *Store) SetRolePasswordsTag(ctx context.Context, tag string, roles int) error {
	return translate(s.db.WithContext(ctx).Exec(`
		INSERT INTO tenant_role_passwords (secret_tag, roles) VALUES (?, ?)
		ON CONFLICT (singleton) DO UPDATE SET secret_tag = excluded.secret_tag, roles = excluded.roles, set_at = now()`, tag, roles).Error)
}
