package dids

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// Service changes a tenant's DIDs and the global index together. Every
// change is written to the index first, marked in flight, then to the
// tenant's database, then settled; a failed tenant write is undone in the
// index at once. A crash between the steps leaves an index row in flight,
// which Reconcile settles from the tenant database. Hence: no claim without
// a DID once settled, and never a DID without its index row.
type Service struct {
	Index controlplane.DIDIndex
	Store *Store
	Log   *slog.Logger
}

// undoTimeout bounds the compensating write, which runs even when the
// client has gone away.
const undoTimeout = 10 * time.Second

func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
}

// Create claims the number platform-wide, then creates the DID.
func (s *Service) Create(ctx context.Context, spec Spec) (*DID, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := s.Index.ClaimDID(ctx, s.Store.Tenant.ID, spec.Number, spec.target()); err != nil {
		return nil, err
	}
	row, err := s.Store.insert(ctx, spec)
	if err != nil {
		return nil, s.undo(ctx, err, s.Index.ReleaseDID(ctx, spec.Number))
	}
	s.settle(ctx, row.Number, row.target())
	return row.public(), nil
}

// Replace sets the target and description of DID id (PUT). The number of a
// DID cannot change: that is a delete and a create.
func (s *Service) Replace(ctx context.Context, id int64, spec Spec) (*DID, error) {
	return s.update(ctx, id, func(Spec) Spec { return spec })
}

// Patch changes the fields present in p (PATCH).
func (s *Service) Patch(ctx context.Context, id int64, p Patch) (*DID, error) {
	return s.update(ctx, id, p.Apply)
}

func (s *Service) update(ctx context.Context, id int64, change func(Spec) Spec) (*DID, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	row, err := s.Store.get(ctx, id)
	if err != nil {
		return nil, err
	}
	spec := change(Spec{Number: row.Number, TargetType: row.TargetType, TargetID: row.TargetID, Description: row.Description})
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if spec.Number != row.Number {
		return nil, controlplane.FieldError("number", "cannot be changed; delete the DID and create the new number")
	}
	prev, err := s.Index.BeginDIDChange(ctx, s.Store.Tenant.ID, row.Number, controlplane.DIDUpdating, spec.target())
	if err != nil {
		return nil, err
	}
	row.TargetType, row.TargetID, row.Description = spec.TargetType, spec.TargetID, spec.Description
	if err := s.Store.update(ctx, row); err != nil {
		return nil, s.undo(ctx, err, s.Index.SettleDID(ctx, row.Number, prev))
	}
	s.settle(ctx, row.Number, row.target())
	return row.public(), nil
}

// Delete removes the DID, then frees the number platform-wide.
func (s *Service) Delete(ctx context.Context, id int64) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	row, err := s.Store.get(ctx, id)
	if err != nil {
		return err
	}
	prev, err := s.Index.BeginDIDChange(ctx, s.Store.Tenant.ID, row.Number, controlplane.DIDDeleting, row.target())
	if err != nil {
		return err
	}
	if err := s.Store.delete(ctx, row.ID); err != nil {
		return s.undo(ctx, err, s.Index.SettleDID(ctx, row.Number, prev))
	}
	if err := s.Index.ReleaseDID(ctx, row.Number); err != nil {
		// The DID is gone; the row stays 'deleting' and Reconcile frees it.
		s.Log.Warn("DID deleted but its index row could not be released yet", "number", row.Number, "tenant_id", s.Store.Tenant.ID, "err", err)
	}
	return nil
}

// settle marks the index row active. If that fails the change has still
// happened in the tenant's database; Reconcile settles the row shortly, so
// the request succeeds and the failure is logged.
func (s *Service) settle(ctx context.Context, number string, target controlplane.DIDTarget) {
	if err := s.Index.SettleDID(ctx, number, target); err != nil {
		s.Log.Warn("DID index not settled yet; the reconciler will", "number", number, "tenant_id", s.Store.Tenant.ID, "err", err)
	}
}

// undo returns the tenant write's error; a failed compensation is logged
// and joined, and the reconciler will finish it.
func (s *Service) undo(ctx context.Context, cause, undoErr error) error {
	if undoErr == nil {
		return cause
	}
	s.Log.Error("DID index could not be restored after a failed tenant write; the reconciler will", "tenant_id", s.Store.Tenant.ID, "err", undoErr)
	return errors.Join(cause, undoErr)
}

// Reconcile settles index rows left in flight (by a crash, or a failed
// compensation) for longer than grace, from the truth in each tenant's
// database. open returns the DID store of a tenant, or nil if the tenant is
// gone (its index rows go with it). Rows younger than grace belong to
// requests still running and are left alone.
func Reconcile(ctx context.Context, index controlplane.DIDIndex, grace time.Duration,
	open func(tenantID int64) (*Store, func(), error)) (settled int, err error) {
	entries, err := index.UnsettledDIDs(ctx, time.Now().Add(-grace))
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, e := range entries {
		if err := reconcileOne(ctx, index, e, open); err != nil {
			errs = append(errs, fmt.Errorf("DID %s: %w", e.Number, err))
		} else {
			settled++
		}
	}
	return settled, errors.Join(errs...)
}

func reconcileOne(ctx context.Context, index controlplane.DIDIndex, e controlplane.DIDEntry, open func(int64) (*Store, func(), error)) error {
	store, release, err := open(e.TenantID)
	if err != nil || store == nil {
		return err
	}
	defer release()
	row, err := store.byNumber(ctx, e.Number)
	if err != nil {
		return err
	}
	switch {
	case e.State == controlplane.DIDDeleting && row != nil:
		if err := store.delete(ctx, row.ID); err != nil {
			return err
		}
		return index.ReleaseDID(ctx, e.Number)
	case row == nil:
		return index.ReleaseDID(ctx, e.Number)
	default:
		return index.SettleDID(ctx, e.Number, row.target())
	}
}

// Apply is cur with the fields p sends: a new target type drops the old
// target id unless one is sent with it ("none" always drops it).
func (p Patch) Apply(cur Spec) Spec {
	controlplane.Set(&cur.Number, p.Number)
	if p.TargetType != nil {
		cur.TargetType = *p.TargetType
		if cur.TargetType == "none" || p.TargetID == nil {
			cur.TargetID = nil
		}
	}
	if p.TargetID != nil {
		cur.TargetID = p.TargetID
	}
	controlplane.Set(&cur.Description, p.Description)
	return cur
}
