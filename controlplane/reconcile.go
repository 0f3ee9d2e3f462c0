package controlplane

import (
	"context"
	"log/slog"
	"time"
)

// Reconciler repairs, every Period and not only at start, what crashes and
// outages leave behind: tenants left pending or deleting (a create whose
// process died, or that could not mark its tenant ready while the catalog
// was down), and whatever Steps name (DID index intents, half-built
// templates). One replica at a time runs a pass (Lock); every repair is
// idempotent, so a pass cut short is finished by the next.
type Reconciler struct {
	Tenants *Tenants
	// Lock takes the one-replica-at-a-time lock of a pass without
	// waiting; ok is false when another replica holds it.
	Lock func(ctx context.Context) (unlock func(), ok bool, err error)
	// Steps run after the tenants, in order.
	Steps []ReconcileStep
	// Period is the time between passes (default 30 s); Grace how long a
	// tenant stays pending or deleting before a pass takes it over
	// (default 1 min): younger ones may be a request still running.
	Period, Grace time.Duration
	// Observe, if set, counts n repairs of kind ("tenant", a step's Kind)
	// with outcome.
	Observe func(kind, outcome string, n int)
	Log     *slog.Logger
}

// ReconcileStep is one more thing a pass repairs. Run returns how many
// repairs it made.
type ReconcileStep struct {
	Kind string
	Run  func(ctx context.Context) (repaired int, err error)
}

// Run makes a pass at once (with no grace: at start every pending tenant
// without a live holder is an orphan, and its lock says whether one has a
// holder), then every Period until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	period := r.Period
	if period <= 0 {
		period = 30 * time.Second
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	grace := time.Duration(0)
	for {
		r.Pass(ctx, grace)
		grace = r.grace()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *Reconciler) grace() time.Duration {
	if r.Grace <= 0 {
		return time.Minute
	}
	return r.Grace
}

// Pass makes one pass if no other replica is making one, and reports
// whether it did.
func (r *Reconciler) Pass(ctx context.Context, grace time.Duration) bool {
	observe := r.Observe
	if observe == nil {
		observe = func(string, string, int) {}
	}
	unlock, ok, err := r.Lock(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.Log.Warn("reconcile: cannot take the reconciler lock (catalog unreachable?); next pass later", "err", err)
		}
		return false
	}
	if !ok {
		return false // another replica is at it
	}
	defer unlock()
	if err := r.Tenants.ReconcileOlder(ctx, grace, func(outcome string) { observe("tenant", outcome, 1) }); err != nil && ctx.Err() == nil {
		r.Log.Error("reconcile: some tenants could not be repaired", "err", err)
	}
	for _, st := range r.Steps {
		n, err := st.Run(ctx)
		if n > 0 {
			observe(st.Kind, "repaired", n)
		}
		if err != nil && ctx.Err() == nil {
			observe(st.Kind, "error", 1)
			r.Log.Error("reconcile: "+st.Kind, "err", err)
		}
	}
	return true
}
