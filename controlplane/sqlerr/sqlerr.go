// Package sqlerr translates PostgreSQL and gorm errors into the domain's
// *controlplane.Error, once, in the stores: no driver error climbs above
// them, and a constraint's name becomes the API field it protects.
package sqlerr

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

// Constraint describes what a named constraint means to an API client.
type Constraint struct {
	Field  string // JSON field name the constraint protects
	Reason string // e.g. "is already taken by another tenant"
}

// Translate maps err to a domain error. constraints names the constraints
// the caller knows; a violated constraint found there becomes a Conflict
// (unique) or Invalid (check, foreign key) naming its field. Errors already
// in the domain pass through; anything else becomes Internal, kept as the
// cause for the log.
func Translate(err error, constraints map[string]Constraint) error {
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
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &controlplane.Error{Code: controlplane.Unavailable, Message: "the database did not answer in time", Err: err}
	}
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return &controlplane.Error{Code: controlplane.Internal, Message: "internal error", Err: err}
	}
	c, known := constraints[pg.ConstraintName]
	switch pg.Code {
	case "23505": // unique_violation
		if known {
			return &controlplane.Error{Code: controlplane.Conflict, Message: c.Field + " " + c.Reason, Fields: map[string]string{c.Field: c.Reason}, Err: err}
		}
		return &controlplane.Error{Code: controlplane.Conflict, Message: "already exists", Err: err}
	case "23514", "23503", "23502", "22001": // check, foreign key, not null, too long
		if known {
			return &controlplane.Error{Code: controlplane.Invalid, Message: c.Field + " " + c.Reason, Fields: map[string]string{c.Field: c.Reason}, Err: err}
		}
		return &controlplane.Error{Code: controlplane.Invalid, Message: "a value breaks a rule of the data model", Err: err}
	case "40001", "40P01": // serialization failure, deadlock: safe to retry
		return &controlplane.Error{Code: controlplane.Unavailable, Message: "a concurrent change interfered; retry the request", Err: err}
	case "57014": // query_canceled (statement timeout)
		return &controlplane.Error{Code: controlplane.Unavailable, Message: "the database did not answer in time", Err: err}
	}
	return &controlplane.Error{Code: controlplane.Internal, Message: "internal error", Err: err}
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
