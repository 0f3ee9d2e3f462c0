package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// OperationMove moves a tenant to another server.
const OperationMove OperationKind = "move"

// MoveMode is how a move copies the tenant.
type MoveMode string

// Move modes: online (logical replication, the tenant served throughout
// but for a held cutover) and offline (pg_dump/pg_restore, the tenant
// answering 503 meanwhile).
const (
	MoveOnline  MoveMode = "online"
	MoveOffline MoveMode = "offline"
)

// ErrCancelled ends an operation whose cancel was asked for.
var ErrCancelled = errors.New("cancelled")

// MoveHooks are the catalog's part of a move, called by the Mover at its
// steps.
type MoveHooks struct {
	// Progress records the phase and counters, and says whether a cancel
	// was asked for.
	Progress func(phase string, counters map[string]any) (cancel bool)
	// Hold holds the tenant's new requests on every replica until until
	// (or Release, or Flip); Release lets them go on to the source.
	Hold    func(ctx context.Context, until time.Time) error
	Release func(ctx context.Context) error
	// Offline makes the tenant answer 503 (an offline move).
	Offline func(ctx context.Context) error
	// Flip records the tenant on the target server: the commit point.
	Flip func(ctx context.Context) error
}

// MoveRequest is one move for a Mover.
type MoveRequest struct {
	Tenant         *Tenant // as it is on the source
	Target         string
	Op             int64
	Mode           MoveMode
	CutoverTimeout time.Duration
	// SlotTimeout bounds an online move's wait for its replication slot
	// (0: no bound).
	SlotTimeout time.Duration
	// Scratch is the file an offline move writes its archive to.
	Scratch string
	Hooks   MoveHooks
}

// Mover copies tenants between servers (tenantdb's Move, through the
// servers).
type Mover interface {
	// CheckMove refuses early a move the servers cannot do (an online move
	// without logical replication or the right to subscribe).
	CheckMove(ctx context.Context, t *Tenant, target string, mode MoveMode) error
	// Move runs a move and returns the name its source is kept under;
	// flipped says whether the catalog was flipped (an error after that is
	// in closing the source, which FinishMove completes).
	Move(ctx context.Context, r MoveRequest) (aside string, flipped bool, err error)
	// FinishMove completes a flipped move (t on the target now): source
	// closed and set aside, target opened. UndoMove removes what a move
	// that did not flip made (t on the source). Both are idempotent.
	FinishMove(ctx context.Context, t *Tenant, source string, op int64, scratch string) (aside string, err error)
	UndoMove(ctx context.Context, t *Tenant, target string, op int64, scratch string) error
	// DropMoveAside drops the copy a move left on server, the one t moved
	// away from.
	DropMoveAside(ctx context.Context, t *Tenant, server, name string) error
}

// MoveStore is the catalog's side of moves.
type MoveStore interface {
	HoldTenant(ctx context.Context, id int64, until *time.Time) (*Tenant, error)
	SetMoving(ctx context.Context, id int64, moving bool) (*Tenant, error)
	MoveTenant(ctx context.Context, id int64, from, to string) (*Tenant, error)
	Server(ctx context.Context, name string) (*Server, error)
}

// MoveSpec is the body of POST /api/tenants/{id}/move.
type MoveSpec struct {
	Server string   `json:"server" validate:"required,max=63"`
	Mode   MoveMode `json:"mode" validate:"omitempty,oneof=online offline"`
}

// StartMove starts moving tenant id to another server and returns its
// operation at once. The tenant must be ready and not deleted, with no
// other operation running (Conflict); the target registered, active and
// with room; an online move needs the servers' support (Mover.CheckMove)
// and the tenant at this binary's latest schema version.
func (o *Operations) StartMove(ctx context.Context, id int64, spec MoveSpec) (*Operation, error) {
	if err := ValidateStruct(&spec); err != nil {
		return nil, err
	}
	if spec.Mode == "" {
		spec.Mode = MoveOnline
	}
	t, err := o.Locks.Tenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := o.movable(ctx, t, spec); err != nil {
		return nil, err
	}
	unlock, err := o.Locks.LockTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	if t, err = o.Locks.Tenant(ctx, id); err == nil {
		err = o.movable(ctx, t, spec)
	}
	if err != nil {
		unlock()
		return nil, err
	}
	op, err := o.Store.StartOperation(ctx, OperationMove, t, map[string]any{"source": t.Server, "target": spec.Server, "mode": string(spec.Mode)})
	if err != nil {
		unlock()
		return nil, err
	}
	o.background(unlock, func(base context.Context, release func()) { o.runMove(base, op, t, spec, release) })
	return op, nil
}

// movable says why t cannot move as spec asks, or nil.
func (o *Operations) movable(ctx context.Context, t *Tenant, spec MoveSpec) error {
	switch {
	case t.Status == StatusDeleted:
		return Errorf(Conflict, "tenant %d is deleted: undelete it first", t.ID)
	case t.Provisioning != ProvisionReady:
		return Errorf(Conflict, "tenant %d is %s: only a ready tenant can be moved", t.ID, t.Provisioning)
	case t.Server == spec.Server:
		return FieldError("server", "tenant "+strconv.FormatInt(t.ID, 10)+" is on "+spec.Server+" already")
	}
	srv, err := o.Moves.Server(ctx, spec.Server)
	if ErrorCode(err) == NotFound {
		return FieldError("server", "no tenant server is named "+spec.Server)
	}
	if err != nil {
		return err
	}
	if srv.Status != ServerActive {
		return Errorf(Conflict, "tenant server %s is %s: it takes no tenants", srv.Name, srv.Status)
	}
	return o.Mover.CheckMove(ctx, t, spec.Server, spec.Mode)
}

// scratch is the file an offline move of operation op writes its archive
// to: under BACKUP_DIR, removed when the move ends.
func (o *Operations) scratch(op int64) string {
	return filepath.Join(o.BackupDir, "moves", strconv.FormatInt(op, 10)+".dump")
}

// runMove runs a move and records how it ended, with release (see
// background); a move that did not flip is undone.
func (o *Operations) runMove(ctx context.Context, op *Operation, t *Tenant, spec MoveSpec, release func()) {
	source := t.Server
	progress := map[string]any{"source": source, "target": spec.Server, "mode": string(spec.Mode)}
	scratch := ""
	if spec.Mode == MoveOffline {
		scratch = o.scratch(op.ID)
		if err := os.MkdirAll(filepath.Dir(scratch), 0o700); err != nil {
			o.endMove(ctx, op, t, progress, false, err, release)
			return
		}
	}
	hooks := o.holdHooks(t.ID)
	hooks.Progress = func(phase string, counters map[string]any) bool {
		p := map[string]any{}
		for k, v := range progress {
			p[k] = v
		}
		for k, v := range counters {
			p[k] = v
		}
		cancel, err := o.Store.ProgressOperation(context.WithoutCancel(ctx), op.ID, phase, p)
		return err == nil && cancel
	}
	hooks.Offline = func(ctx context.Context) error {
		_, err := o.Moves.SetMoving(ctx, t.ID, true)
		return err
	}
	hooks.Flip = func(ctx context.Context) error {
		_, err := o.Moves.MoveTenant(ctx, t.ID, source, spec.Server)
		return err
	}
	aside, flipped, err := o.Mover.Move(ctx, MoveRequest{Tenant: t, Target: spec.Server, Op: op.ID, Mode: spec.Mode,
		CutoverTimeout: o.CutoverTimeout, SlotTimeout: o.SlotTimeout, Scratch: scratch, Hooks: hooks})
	if flipped {
		progress["aside"] = aside
		if err != nil {
			progress["finish_error"] = err.Error() // the reconciler finishes it (DropAsides)
			if o.Log != nil {
				o.Log.Error("a move flipped, then closing its source failed; the reconciler finishes it", "operation_id", op.ID, "tenant_id", t.ID, "err", err)
			}
		} else {
			progress["finished"] = true
		}
		o.endMove(ctx, op, t, progress, true, nil, release)
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if undo := o.undoMove(uctx, t.ID, spec.Server, op.ID, scratch); undo != nil {
		err = errors.Join(err, fmt.Errorf("undoing it: %w", undo))
	}
	o.endMove(ctx, op, t, progress, false, err, release)
}

// holdHooks are the Hold and Release of a cutover (a move's, an online
// restore's swap) of tenant id: its held_until set, then cleared.
func (o *Operations) holdHooks(id int64) MoveHooks {
	return MoveHooks{
		Hold: func(ctx context.Context, until time.Time) error {
			_, err := o.Moves.HoldTenant(ctx, id, &until)
			return err
		},
		Release: func(ctx context.Context) error {
			_, err := o.Moves.HoldTenant(ctx, id, nil)
			return err
		},
	}
}

// undoMove removes what a move of tenant id to target that did not flip
// made, on the servers and in the catalog: a hold left set, an offline
// move's moving state, both read from the catalog as it is now.
func (o *Operations) undoMove(ctx context.Context, id int64, target string, op int64, scratch string) error {
	t, err := o.Locks.Tenant(ctx, id)
	if err != nil {
		return err
	}
	if err := o.Mover.UndoMove(ctx, t, target, op, scratch); err != nil {
		return err
	}
	if t.HeldUntil != nil {
		if _, err := o.Moves.HoldTenant(ctx, t.ID, nil); err != nil {
			return err
		}
	}
	if t.Provisioning == ProvisionMoving {
		if _, err := o.Moves.SetMoving(ctx, t.ID, false); err != nil {
			return err
		}
	}
	return nil
}

// endMove records a move's end, letting go of the tenant with release.
func (o *Operations) endMove(ctx context.Context, op *Operation, t *Tenant, progress map[string]any, flipped bool, err error, release func()) {
	now := time.Now()
	op.FinishedAt, op.Progress = &now, progress
	switch {
	case flipped:
		op.State = OperationSucceeded
	case errors.Is(err, ErrCancelled):
		op.State, op.Error = OperationCancelled, "cancelled: the tenant stays on "+t.Server
	default:
		op.State, op.Error = OperationFailed, publicText(err)+"; the tenant stays on "+t.Server
		if ctx.Err() != nil {
			op.Error = "interrupted: the control plane stopped; the move was undone, the tenant stays on " + t.Server
		}
	}
	_ = o.record(ctx, op, release)
	if o.Log != nil {
		o.Log.Info("move finished", "operation_id", op.ID, "tenant_id", t.ID, "state", op.State, "source", progress["source"], "target", progress["target"], "err", op.Error)
	}
}

// recoverMove finishes or undoes a move a dead process left running, by
// the catalog: flipped (the tenant on the target) it is finished,
// otherwise undone.
func (o *Operations) recoverMove(ctx context.Context, op *Operation) error {
	t, err := o.Locks.Tenant(ctx, op.TenantID)
	if err != nil {
		return err
	}
	source, _ := op.Progress["source"].(string)
	target, _ := op.Progress["target"].(string)
	mode, _ := op.Progress["mode"].(string)
	scratch := ""
	if MoveMode(mode) == MoveOffline {
		scratch = o.scratch(op.ID)
	}
	progress := map[string]any{"source": source, "target": target, "mode": mode}
	op.Progress = progress
	if t.Server == target {
		aside, err := o.Mover.FinishMove(ctx, t, source, op.ID, scratch)
		if err != nil {
			return err
		}
		progress["aside"], progress["finished"] = aside, true
		op.State, op.Error = OperationSucceeded, ""
		if o.Log != nil {
			o.Log.Warn("an interrupted move had flipped: finished, the tenant is on its new server", "operation_id", op.ID, "tenant_id", t.ID, "server", target)
		}
		return o.Store.FinishOperation(ctx, op, nil)
	}
	if err := o.undoMove(ctx, t.ID, target, op.ID, scratch); err != nil {
		return err
	}
	op.Error = "interrupted: the process running it stopped; the move was undone, the tenant stays on " + t.Server + "; start it again"
	if o.Log != nil {
		o.Log.Warn("an interrupted move was undone", "operation_id", op.ID, "tenant_id", t.ID, "server", t.Server)
	}
	return o.Store.FinishOperation(ctx, op, nil)
}

// finishMoves completes flipped moves whose source could not be closed
// (finish_error), and drops the sources moves set aside once
// MoveSourceGrace has passed (part of DropAsides).
func (o *Operations) finishMoves(ctx context.Context) (int, error) {
	ops, err := o.Store.Operations(ctx, OperationFilter{Kind: OperationMove, State: OperationSucceeded, Limit: 1000})
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for i := range ops {
		op := &ops[i]
		source, _ := op.Progress["source"].(string)
		aside, _ := op.Progress["aside"].(string)
		if aside == "" || op.Progress["dropped"] == true || op.FinishedAt == nil {
			continue
		}
		t, err := o.Locks.Tenant(ctx, op.TenantID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if op.Progress["finished"] != true {
			if _, err := o.Mover.FinishMove(ctx, t, source, op.ID, ""); err != nil {
				errs = append(errs, fmt.Errorf("operation %d: %w", op.ID, err))
				continue
			}
			op.Progress["finished"] = true
			delete(op.Progress, "finish_error")
		} else if time.Since(*op.FinishedAt) >= o.MoveSourceGrace {
			if err := o.Mover.DropMoveAside(ctx, t, source, aside); err != nil {
				errs = append(errs, fmt.Errorf("operation %d: %w", op.ID, err))
				continue
			}
			op.Progress["dropped"] = true
			if o.Log != nil {
				o.Log.Info("the source a move left was dropped after its grace period", "operation_id", op.ID, "tenant_id", t.ID, "server", source, "name", aside)
			}
		} else {
			continue
		}
		if err := o.Store.SetProgress(ctx, op.ID, op.Progress); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// DropMoveAsides drops, at once, every source copy t's moves left on
// other servers (a purge: nothing of a purged tenant stays anywhere).
func (o *Operations) DropMoveAsides(ctx context.Context, t *Tenant) error {
	ops, err := o.Store.Operations(ctx, OperationFilter{TenantID: t.ID, Kind: OperationMove, State: OperationSucceeded, Limit: 1000})
	if err != nil {
		return err
	}
	var errs []error
	for _, op := range ops {
		source, _ := op.Progress["source"].(string)
		aside, _ := op.Progress["aside"].(string)
		if aside == "" || op.Progress["dropped"] == true {
			continue
		}
		errs = append(errs, o.Mover.DropMoveAside(ctx, t, source, aside))
	}
	return errors.Join(errs...)
}
