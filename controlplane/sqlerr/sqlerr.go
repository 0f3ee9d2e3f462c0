// Package sqlerr translates PostgreSQL and gorm errors into the domain's
// *controlplane.Error, once, in the stores: no driver error climbs above
// them, and a constraint's name becomes the API field it protects.
//
// It is also the one place that tells an outage from a bug. An outage (the
// server unreachable, restarting or shutting down, a connection lost, a
// timeout, a transaction that lost to a concurrent one) becomes a 503 code
// that clients retry with backoff; anything the code does not recognise
// stays Internal (500), a bug to look at. Handlers never decide that.
package sqlerr

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

// Constraint describes what a named constraint means to an API client.
type Constraint struct {
	Field  string // JSON field name the constraint protects
	Reason string // e.g. "is already taken by another tenant"
}

// Schema says which database a constraint is in: the catalog, or every
// tenant's (database or schema).
type Schema string

const (
	Catalog Schema = "catalog"
	Tenant  Schema = "tenant"
)

var (
	registryMu sync.Mutex
	registry   = map[Schema]map[string]Constraint{}
)

// Register records the constraints a store maps to API fields, by the
// schema they are in, and returns them: every map of constraint names is
// declared through it, so that TestConstraintContracts can check each name
// against the migrated databases (a renamed constraint would otherwise
// turn a 409 naming its field into an anonymous one, silently).
func Register(schema Schema, constraints map[string]Constraint) map[string]Constraint {
	registryMu.Lock()
	defer registryMu.Unlock()
	if registry[schema] == nil {
		registry[schema] = map[string]Constraint{}
	}
	for name, c := range constraints {
		registry[schema][name] = c
	}
	return constraints
}

// Registered is every constraint registered for schema.
func Registered(schema Schema) map[string]Constraint {
	registryMu.Lock()
	defer registryMu.Unlock()
	return maps.Clone(registry[schema])
}

// Translate maps err, from the catalog database, to a domain error.
// constraints names the constraints the caller knows; a violated constraint
// found there becomes a Conflict (unique) or Invalid (check, foreign key)
// naming its field. Errors already in the domain pass through; an outage
// becomes Unavailable (see Outage); anything else becomes Internal, kept as
// the cause for the log.
func Translate(err error, constraints map[string]Constraint) error {
	return translate(err, constraints, controlplane.Unavailable, "the database is unavailable; retry shortly")
}

// TranslateTenant is Translate for the stores of one tenant's database: a
// tenant database that cannot be reached is TenantUnavailable, so that a
// client and an operator can tell it from the catalog being down
// (Unavailable) while both stay 503 with Retry-After. Timeouts and lost
// transaction races stay Unavailable: they are not about the tenant.
func TranslateTenant(err error, constraints map[string]Constraint) error {
	return translate(err, constraints, controlplane.TenantUnavailable, "the tenant's database is unavailable; retry shortly")
}

func translate(err error, constraints map[string]Constraint, downCode controlplane.Code, downMessage string) error {
	if err == nil {
		return nil
	}
	var de *controlplane.Error
	if errors.As(err, &de) {
		return err
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return &controlplane.Error{Code: controlplane.NotFound, Message: "not found", Err: err}
	}
	switch classify(err) {
	case down:
		return &controlplane.Error{Code: downCode, Message: downMessage, Err: err}
	case slow:
		return &controlplane.Error{Code: controlplane.Unavailable, Message: "the database did not answer in time; retry shortly", Err: err}
	case contended:
		return &controlplane.Error{Code: controlplane.Unavailable, Message: "a concurrent change interfered; retry the request", Err: err}
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return &controlplane.Error{Code: controlplane.Internal, Message: "internal error", Err: err}
	}
	c, known := constraints[pg.ConstraintName]
	switch pg.Code {
	case pgerrcode.UniqueViolation:
		if known {
			return &controlplane.Error{Code: controlplane.Conflict, Message: c.Field + " " + c.Reason, Fields: map[string]string{c.Field: c.Reason}, Err: err}
		}
		return &controlplane.Error{Code: controlplane.Conflict, Message: "already exists", Err: err}
	case pgerrcode.CheckViolation, pgerrcode.ForeignKeyViolation, pgerrcode.NotNullViolation, pgerrcode.StringDataRightTruncationDataException:
		if known {
			return &controlplane.Error{Code: controlplane.Invalid, Message: c.Field + " " + c.Reason, Fields: map[string]string{c.Field: c.Reason}, Err: err}
		}
		return &controlplane.Error{Code: controlplane.Invalid, Message: "a value breaks a rule of the data model", Err: err}
	case pgerrcode.CharacterNotInRepertoire, pgerrcode.UntranslatableCharacter, pgerrcode.InvalidTextRepresentation: // NUL, bad UTF-8, text that is not the column's type
		// The edge refuses such text naming the field (httpapi); a path it
		// missed is still the client's input, not a bug.
		return &controlplane.Error{Code: controlplane.Invalid, Message: "a value holds characters the database cannot store", Err: err}
	}
	return &controlplane.Error{Code: controlplane.Internal, Message: "internal error", Err: err}
}

// Outage returns the Unavailable error for err when err is an outage of a
// database (see classify), nil otherwise. It is the safety net of the error
// renderer: an error that reached it untranslated is still a 503 when it
// is an outage, not a 500.
func Outage(err error) *controlplane.Error {
	var de *controlplane.Error
	if err == nil || errors.As(err, &de) || classify(err) == none {
		return nil
	}
	return translate(err, nil, controlplane.Unavailable, "the database is unavailable; retry shortly").(*controlplane.Error)
}

// kind is what an error says about the database.
type kind int

const (
	none      kind = iota // not an outage: a bug, bad data, or a rule of the data model
	down                  // unreachable, restarting, shutting down, full, or the connection was lost
	slow                  // the request's deadline or a statement timeout ran out
	contended             // a transaction lost to a concurrent one (after any retries)
)

// classify tells an outage from the rest. It looks through every wrapper
// (gorm's, database/sql's, fmt.Errorf's %w) with errors.As and errors.Is.
//
// The server's own verdict comes first: a *pgconn.PgError names the state
// exactly, also when it arrived while connecting (inside a ConnectError).
// Without one, a failed connection attempt or a lost connection is an
// outage: nothing the code did could cause it, and waiting cures it.
func classify(err error) kind {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pgState(pg.Code)
	}
	// Refused, DNS, TLS handshake, connect timeout, the server hanging up
	// during the handshake: all end as a ConnectError. (A server that says
	// why it refuses, wrong password or no such database, is a PgError
	// above, and not an outage: waiting does not cure it.)
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return down
	}
	// Before net.Error: context.DeadlineExceeded implements net.Error too.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || pgconn.Timeout(err) {
		return slow
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), // the server closed the connection
		errors.Is(err, pgconn.ErrConnClosed), // pgx had already closed it
		errors.Is(err, driver.ErrBadConn),    // database/sql gave up reconnecting
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return down
	}
	var ne net.Error // *net.OpError, *net.DNSError: the network failed, not the code
	if errors.As(err, &ne) {
		return down
	}
	return none
}

// pgState classifies a SQLSTATE.
func pgState(code string) kind {
	switch {
	case strings.HasPrefix(code, "08"): // connection_exception
		return down
	case strings.HasPrefix(code, "57P"): // 57P01 admin_shutdown (also pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P04 database_dropped, 57P05 idle_session_timeout
		return down
	case code == pgerrcode.TooManyConnections, code == pgerrcode.OutOfMemory, code == pgerrcode.DiskFull, code == pgerrcode.InsufficientResources: // not 53400 (configuration limit exceeded): a limit a query hit
		return down
	case code == pgerrcode.QueryCanceled: // statement_timeout, or the cancel pgx sends at a deadline
		return slow
	case code == pgerrcode.SerializationFailure, code == pgerrcode.DeadlockDetected: // nothing retries them in-process, the client may
		return contended
	}
	return none
}

// Referenced turns the Invalid a foreign key gives when a delete hits a row
// that is still referenced (ON DELETE RESTRICT) into a Conflict: the input
// is fine, the state of the data is not.
func Referenced(err error) error {
	var de *controlplane.Error
	if errors.As(err, &de) && de.Code == controlplane.Invalid {
		return &controlplane.Error{Code: controlplane.Conflict, Message: de.Message, Fields: de.Fields, Err: de.Err}
	}
	return err
}

// LikeContains returns the LIKE pattern matching s anywhere, with LIKE's
// own wildcards in s escaped, so "100%" searches for a literal percent.
func LikeContains(s string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
}
