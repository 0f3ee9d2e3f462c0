package servers

import (
	"context"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
)

// Moves between servers (controlplane.Mover): each one a tenantdb.Move
// between the two servers' provisioners.

var _ controlplane.Mover = (*Set)(nil)

// move is the Move of t from source to target.
func (s *Set) move(ctx context.Context, t *controlplane.Tenant, source, target string, op int64, mode controlplane.MoveMode, scratch string) (*tenantdb.Move, error) {
	src, err := s.Get(ctx, source)
	if err != nil {
		return nil, err
	}
	dst, err := s.Get(ctx, target)
	if err != nil {
		return nil, err
	}
	return &tenantdb.Move{Source: src.Provisioner, Target: dst.Provisioner, SourceName: src.Name, TargetName: dst.Name,
		Tenant: t, Op: op, Mode: mode, Scratch: scratch, Log: s.Log, Step: s.Step}, nil
}

// CheckMove refuses early a move the servers cannot do.
func (s *Set) CheckMove(ctx context.Context, t *controlplane.Tenant, target string, mode controlplane.MoveMode) error {
	m, err := s.move(ctx, t, t.Server, target, 0, mode, "")
	if err != nil {
		return err
	}
	return m.Check(ctx)
}

// Move runs a move (t on its source, r.Target the target).
func (s *Set) Move(ctx context.Context, r controlplane.MoveRequest) (string, bool, error) {
	m, err := s.move(ctx, r.Tenant, r.Tenant.Server, r.Target, r.Op, r.Mode, r.Scratch)
	if err != nil {
		return "", false, err
	}
	m.CutoverTimeout, m.SlotTimeout, m.Hooks = r.CutoverTimeout, r.SlotTimeout, r.Hooks
	return m.Run(ctx)
}

// FinishMove completes a flipped move of t (on its target now) from
// source.
func (s *Set) FinishMove(ctx context.Context, t *controlplane.Tenant, source string, op int64, scratch string) (string, error) {
	m, err := s.move(ctx, t, source, t.Server, op, "", scratch)
	if err != nil {
		return "", err
	}
	return m.Finish(ctx)
}

// UndoMove removes what a move of t (still on its source) to target made.
func (s *Set) UndoMove(ctx context.Context, t *controlplane.Tenant, target string, op int64, scratch string) error {
	m, err := s.move(ctx, t, t.Server, target, op, "", scratch)
	if err != nil {
		return err
	}
	return m.Undo(ctx)
}

// DropMoveAside drops the copy a move of t left on server.
func (s *Set) DropMoveAside(ctx context.Context, t *controlplane.Tenant, server, name string) error {
	c, err := s.Get(ctx, server)
	if err != nil {
		return err
	}
	return c.Provisioner.DropMoveAside(ctx, t, name, t.Server == server)
}

// Reset drops every open server's connections to t's database (or
// schema), without waiting: after a move or an online restore another
// process made, the ones left point at a database t no longer uses.
func (s *Set) Reset(t *controlplane.Tenant) {
	s.Each(func(c *Conn) {
		if c.Router != nil {
			c.Router.Reset(t)
		}
	})
}
