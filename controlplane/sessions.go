package controlplane

import (
	"context"
	"time"
)

// ConsoleSession is an operator's login to the fleet console, as the
// catalog keeps it: never the session id itself (the browser's cookie),
// only its hash, and a MAC of the id under the ADMIN_TOKEN it was made
// with (docs/CONSOLE.md).
type ConsoleSession struct {
	IDHash    [32]byte
	TokenMAC  [32]byte
	Actor     string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ConsoleSessionStore keeps console sessions where every replica sees
// them (the catalog), so that a login works behind a load balancer and a
// logout ends the session everywhere.
type ConsoleSessionStore interface {
	// CreateConsoleSession stores s and deletes the sessions that have
	// expired (by the catalog's clock).
	CreateConsoleSession(ctx context.Context, s ConsoleSession) error
	// ConsoleSession returns the unexpired session with the id hash, or a
	// NotFound error.
	ConsoleSession(ctx context.Context, idHash [32]byte) (*ConsoleSession, error)
	// DeleteConsoleSession ends a session (no error if it is gone already).
	DeleteConsoleSession(ctx context.Context, idHash [32]byte) error
}
