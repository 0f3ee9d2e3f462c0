package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Spare databases. Cloning the template database costs what a bare CREATE
// DATABASE costs (tens of milliseconds), and a new tenant's role, the clone's
// REASSIGN OWNED and a first connection to the new database add more. So a
// few complete tenant databases are kept ready: made in the background, each
// under an id reserved from the tenants' own id sequence, with the role, the
// clone and the reassignment done and the database marked as a spare of this
// catalog. A create in database mode claims one (the catalog row takes the
// spare's id in the same statement that removes the spare) and re-marks it
// as the tenant's: a few milliseconds. With none left, a create takes the
// ordinary path; the filler makes more afterwards.
//
// Spares are never tenants: they live in their own catalog table, which
// nothing that lists, routes or migrates tenants reads, and their databases
// carry a spare's mark, not a tenant's. A spare is claimed only if it was
// made from the current template (the current migration history), so an
// upgrade never hands out an old one; the reconciler drops those.

// Spare is one spare database, as the catalog records it.
type Spare struct {
	ID       int64
	DBName   string
	Template string
	State    string // making or ready
}

// SpareCatalog is the catalog's side of spares.
type SpareCatalog interface {
	// ReserveSpare reserves an id for a new spare of template and records it
	// as making, holding the id's lifecycle lock until unlock; ok is false
	// if want spares of template exist already.
	ReserveSpare(ctx context.Context, template, dbPrefix string, want int) (id int64, unlock func(), ok bool, err error)
	// SpareReady makes spare id claimable.
	SpareReady(ctx context.Context, id int64) error
	Spares(ctx context.Context) ([]Spare, error)
	// TakeSpare removes spare id's row if it is still making or of another
	// template than keep ("": any); the caller holds its lifecycle lock.
	TakeSpare(ctx context.Context, id int64, keep string) (bool, error)
	DeleteSpare(ctx context.Context, id int64) error
	// UsedIDs reports which of ids belong to a tenant or a spare.
	UsedIDs(ctx context.Context, ids []int64) (map[int64]bool, error)
	LockTenant(ctx context.Context, id int64) (unlock func(), err error)
}

// SpareProvisioner is the tenant server's side of spares.
type SpareProvisioner interface {
	DBPrefix() string
	// SpareTemplate names the template database spares are cloned from now.
	SpareTemplate() (string, error)
	// MakeSpare makes spare id's role and database, marked as a spare.
	MakeSpare(ctx context.Context, id int64) error
	// AdoptSpare re-marks the spare database t claimed as t's and returns
	// its schema version. It fails if the database is not that spare.
	AdoptSpare(ctx context.Context, t *Tenant) (uint, error)
	// DropSpare drops what a spare of id left on the server, if it is one.
	DropSpare(ctx context.Context, id int64) error
	// SpareIDs lists the ids of every spare (complete or not) of this
	// catalog on the server.
	SpareIDs(ctx context.Context) ([]int64, error)
}

// Spares keeps Want spare databases ready.
type Spares struct {
	Catalog     SpareCatalog
	Provisioner SpareProvisioner
	// Want is how many spares to keep; with 0, creates claim none and the
	// reconciler drops any left.
	Want int
	// Active, if set, says whether the server takes new tenants now: a
	// server draining or disabled keeps no spares (its reconcile drops
	// them, so that it can be removed once its tenants are gone).
	Active func(ctx context.Context) bool
	// Interval is how often Run reconciles without being woken.
	Interval time.Duration
	Log      *slog.Logger

	wake chan struct{}
}

// NewSpares returns a filler; Run starts it.
func NewSpares(c SpareCatalog, p SpareProvisioner, want int, log *slog.Logger) *Spares {
	return &Spares{Catalog: c, Provisioner: p, Want: want, Interval: 30 * time.Second, Log: log, wake: make(chan struct{}, 1)}
}

// want is how many spares to keep now: Want, or none on a server that
// takes no new tenants.
func (s *Spares) want(ctx context.Context) int {
	if s.Active != nil && !s.Active(ctx) {
		return 0
	}
	return s.Want
}

// Wake asks Run to refill now (a spare was just claimed).
func (s *Spares) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run reconciles and fills until ctx ends: at start, when woken, and every
// Interval. Errors are logged and retried on the next pass.
func (s *Spares) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("spares: reconcile", "err", err)
		}
		if err := s.Fill(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("spares: making a spare database failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// Fill makes spares until Want of the current template exist.
func (s *Spares) Fill(ctx context.Context) error {
	if s.want(ctx) <= 0 {
		return nil
	}
	tpl, err := s.Provisioner.SpareTemplate()
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		id, unlock, ok, err := s.Catalog.ReserveSpare(ctx, tpl, s.Provisioner.DBPrefix(), s.want(ctx))
		if err != nil || !ok {
			return err
		}
		err = s.make(ctx, id)
		unlock()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// make makes spare id, which the caller reserved and holds the lock of. A
// failure drops what was made and the row; if even that fails, the row is
// left making, for the reconciler.
func (s *Spares) make(ctx context.Context, id int64) error {
	start := time.Now()
	err := s.Provisioner.MakeSpare(ctx, id)
	if err == nil {
		if err = s.Catalog.SpareReady(ctx, id); err == nil {
			s.Log.Debug("spare database ready", "id", id, "duration", time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
	if dropErr := s.Provisioner.DropSpare(ctx, id); dropErr != nil {
		return errors.Join(fmt.Errorf("spare %d: %w", id, err), fmt.Errorf("cleanup: %w", dropErr))
	}
	return errors.Join(fmt.Errorf("spare %d: %w", id, err), s.Catalog.DeleteSpare(ctx, id))
}

// Reconcile drops the spares the catalog no longer wants: those of an older
// template, those beyond Want, those whose maker died half-way, and those on the server that
// the catalog does not know at all (a row lost, e.g. by a catalog
// migrated down and up). A spare being made or claimed is locked and left
// alone.
func (s *Spares) Reconcile(ctx context.Context) error {
	tpl, err := s.Provisioner.SpareTemplate()
	if err != nil {
		return err
	}
	rows, err := s.Catalog.Spares(ctx)
	if err != nil {
		return err
	}
	var errs []error
	kept, want := 0, s.want(ctx)
	for _, sp := range rows {
		keep := tpl
		if sp.State == "ready" && sp.Template == tpl {
			if kept < want {
				kept++
				continue
			}
			keep = "" // more than wanted (the setting was lowered)
		}
		if err := s.drop(ctx, sp.ID, func() (bool, error) { return s.Catalog.TakeSpare(ctx, sp.ID, keep) }); err != nil {
			errs = append(errs, err)
		}
	}
	ids, err := s.Provisioner.SpareIDs(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	used, err := s.Catalog.UsedIDs(ctx, ids)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range ids {
		if used[id] {
			continue
		}
		// Neither a tenant nor a spare: no one can claim it any more (ids
		// are never reused), so it is dropped.
		if err := s.drop(ctx, id, func() (bool, error) {
			used, err := s.Catalog.UsedIDs(ctx, []int64{id})
			return !used[id], err
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// drop drops spare id under its lifecycle lock if take (run under the
// lock) says it is still ours to drop.
func (s *Spares) drop(ctx context.Context, id int64, take func() (bool, error)) error {
	unlock, err := s.Catalog.LockTenant(ctx, id)
	if ErrorCode(err) == Conflict {
		return nil // being made or claimed
	}
	if err != nil {
		return err
	}
	defer unlock()
	ok, err := take()
	if err != nil || !ok {
		return err
	}
	s.Log.Info("spares: dropping a spare database the catalog no longer wants", "id", id)
	if err := s.Provisioner.DropSpare(ctx, id); err != nil {
		// Its row is gone; the role still carries the spare's mark, so the
		// next pass finds it again as unknown to the catalog.
		return fmt.Errorf("spare %d: %w", id, err)
	}
	return nil
}
