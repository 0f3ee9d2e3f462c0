package tenantdb

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/laracopilot/controlplane/controlplane"
)

// RoleSecret derives the passwords of tenant database roles. Database-mode
// tenants each get a login role that owns their database and nothing else,
// with CONNECT revoked from PUBLIC, and the router connects to a tenant
// database only as that tenant's role: even a bug in our SQL cannot reach
// another tenant's database.
//
// The passwords are never stored: each is HMAC-SHA256(secret, role name),
// recomputed when needed. The secret is TENANT_ROLE_SECRET or, without it,
// random bytes kept in the catalog database, which tenant roles cannot
// reach; never anything a tenant role can read. Rotation: serve resets every
// role's password when the secret changes (docs/SECURITY.md).
type RoleSecret []byte

// Password returns the password of role.
func (s RoleSecret) Password(role string) string {
	m := hmac.New(sha256.New, s)
	m.Write([]byte("laracopilot tenant role\x00" + role))
	return hex.EncodeToString(m.Sum(nil))
}

// Tag identifies the secret without revealing it or any password: an HMAC
// of a fixed label that no password's input can equal (those continue the
// label's first words with a NUL, this one with a space). The catalog keeps
// it to know which secret the roles' passwords were last set from.
func (s RoleSecret) Tag() string {
	m := hmac.New(sha256.New, s)
	m.Write([]byte("laracopilot tenant role secret tag"))
	return hex.EncodeToString(m.Sum(nil))
}

// scramVerifier returns the SCRAM-SHA-256 verifier of password (RFC 5802,
// PostgreSQL's format). Sending the verifier instead of the password keeps
// the password out of the server's statement log and pg_stat_activity.
func scramVerifier(password string) string {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		panic(err) // only for parameters FIPS mode refuses; these are constant
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(storedKey[:]), b64(serverKey))
}

// roleMarkQuery reads a role's comment (the catalog's mark).
const roleMarkQuery = `SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1`

// ensureRole creates tenant t's login role (named like its database) if it
// does not exist, or resets its password to the current secret's. The
// admin is made a member of it, which PostgreSQL requires for creating a
// database owned by it and lets the admin drop it later.
func (p *Provisioner) ensureRole(ctx context.Context, t *controlplane.Tenant) error {
	exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery)
	if err != nil {
		return err
	}
	if exists {
		return p.setPassword(ctx, t.DBName)
	}
	return p.createRole(ctx, t.DBName, p.mark(t), true)
}

// setPassword sets role name's password to the current secret's.
func (p *Provisioner) setPassword(ctx context.Context, name string) error {
	verifier := literal(scramVerifier(p.roles.Password(name)))
	// The password only: a deleted tenant's role stays NOLOGIN (Seal).
	_, err := p.admin.ExecContext(ctx, `ALTER ROLE `+quote(name)+` WITH PASSWORD `+verifier)
	return err
}

// Seal closes a deleted tenant's database to its own role: no login, and
// its open sessions ended; nothing else connects to it as the tenant (the
// router's pools are closed first). A schema tenant has no role: only the
// router forgets it.
func (p *Provisioner) Seal(ctx context.Context, t *controlplane.Tenant) error {
	if err := p.checkName(t); err != nil {
		return err
	}
	if p.BeforeDrop != nil {
		p.BeforeDrop(t)
	}
	return p.login(ctx, t, false)
}

// Unseal lets a tenant's role log in again (undelete).
func (p *Provisioner) Unseal(ctx context.Context, t *controlplane.Tenant) error {
	if err := p.checkName(t); err != nil || t.Isolation != controlplane.IsolationDatabase {
		return err
	}
	if exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery); err != nil || !exists {
		return err
	}
	_, err := p.admin.ExecContext(ctx, `ALTER ROLE `+quote(t.DBName)+` LOGIN`)
	return err
}

// createRole creates login role name, marked with mark, with its password
// from the role secret (or, without password, none yet: setPassword
// follows), and makes the admin a member of it.
func (p *Provisioner) createRole(ctx context.Context, name, mark string, password bool) error {
	role, with := quote(name), ""
	if password {
		with = ` PASSWORD ` + literal(scramVerifier(p.roles.Password(name)))
	}
	// One round trip, one implicit transaction: all three or none.
	_, err := p.admin.ExecContext(ctx, `CREATE ROLE `+role+` WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`+with+`;
		COMMENT ON ROLE `+role+` IS `+literal(mark)+`;
		GRANT `+role+` TO CURRENT_USER`)
	if err != nil {
		return fmt.Errorf("create role %s: %w", name, err)
	}
	return nil
}

// dropRole drops tenant t's role, if it exists and is t's.
func (p *Provisioner) dropRole(ctx context.Context, t *controlplane.Tenant) error {
	exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery)
	if err != nil || !exists {
		return err
	}
	_, err = p.admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+quote(t.DBName))
	return err
}

// RotateRolePassword sets tenant t's role password to the current
// secret's (after the secret changed). Unlike provisioning it never creates
// the role: a role that is gone belongs to a tenant deleted meanwhile, and
// making it again would leave a role nothing ever drops.
func (p *Provisioner) RotateRolePassword(ctx context.Context, t *controlplane.Tenant) error {
	if t.Isolation != controlplane.IsolationDatabase {
		return nil
	}
	if err := p.checkName(t); err != nil {
		return err
	}
	exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery)
	if err != nil || !exists {
		return err
	}
	err = p.setPassword(ctx, t.DBName)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == pgerrcode.UndefinedObject { // dropped since checkOwner: deleted
		return nil
	}
	return err
}
