package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MigrationKind is what a fleet run does to each tenant.
type MigrationKind string

// The operations of `controlplane migrate tenants`.
const (
	MigrateUp      MigrationKind = "up"
	MigrateDown    MigrationKind = "down"
	MigrateGoto    MigrationKind = "goto"
	MigrateForce   MigrationKind = "force"
	MigrateVersion MigrationKind = "version"
)

// MigrationOp is one operation: down N steps, goto or force a version.
type MigrationOp struct {
	Kind    MigrationKind
	N       int
	Version uint
	// NoVersion forces no version at all (golang-migrate's -1: before the
	// first migration) instead of Version.
	NoVersion bool
}

// MigrationOutcome is what one tenant's run found and left.
type MigrationOutcome struct {
	From, To uint
	Dirty    bool
	// Clean, for a run that left the tenant dirty, is the version its
	// schema is really at (-1: none), when the run knows it (the failed
	// file ran in a transaction); nil otherwise.
	Clean *int64
	Err   error
}

// Migrator runs a migration operation on one tenant's database or schema.
type Migrator interface {
	Migrate(ctx context.Context, t *Tenant, op MigrationOp) MigrationOutcome
}

// FleetCatalog is what a fleet run needs of the catalog. Every tenant is
// migrated under its lifecycle lock (one runner at a time per tenant, and
// never beside its provisioning or deletion) and its outcome recorded
// before the lock is released; both are done for many tenants per
// statement.
type FleetCatalog interface {
	// TryLockTenants takes, without waiting, the lifecycle locks of those
	// of ids that nobody holds (held[i] for ids[i]), in one statement.
	TryLockTenants(ctx context.Context, ids []int64) (locks TenantLocks, held []bool, err error)
	// LockTenantWait takes one tenant's lifecycle lock, waiting for it.
	LockTenantWait(ctx context.Context, id int64) (unlock func(), err error)
	// RecordMigrations stores the outcomes of many tenants' runs (with
	// their audit entries) in one statement; found[i] says whether
	// recs[i]'s tenant exists.
	RecordMigrations(ctx context.Context, recs []MigrationRecord) (found []bool, err error)
}

// TenantLocks is a set of lifecycle locks taken by TryLockTenants.
type TenantLocks interface {
	// Unlock releases the locks of ids (in one statement).
	Unlock(ids []int64)
	// Close releases what is still held and frees the set's session.
	Close()
}

// MigrationRecord is what the catalog keeps of one tenant's run.
type MigrationRecord struct {
	TenantID int64
	Version  uint
	Dirty    bool
	Error    string // "" on success
}

// MigrationResult is one line of a fleet run's report.
type MigrationResult struct {
	Tenant   *Tenant
	From, To uint
	Dirty    bool
	Skipped  string // why nothing was done ("" if something ran)
	// Drift says how the tenant's real migrations table differed from
	// the catalog before the run ("" if it agreed or was not read).
	Drift string
	// Clean is the outcome's Clean: where a dirty tenant's schema is.
	Clean    *int64
	Duration time.Duration
	Err      error
}

// NotStarted says the run never started the tenant (it was cancelled, or
// stopped at MaxFailures, first).
func (r MigrationResult) NotStarted() bool { return r.Skipped == interrupted }

// Fleet migrates many tenants with a bounded pool of workers per tenant
// server. One tenant's failure never stops the others; each tenant's
// outcome is recorded in the catalog (and its lock released) shortly after
// it completes, many tenants per statement.
type Fleet struct {
	Migrator Migrator
	Catalog  FleetCatalog
	Latest   uint // the newest tenant migration this binary carries
	// Concurrency is the tenants migrated at once on each tenant server:
	// the servers run side by side, so that a slow or unreachable server
	// holds up only its own tenants, and each server's load is the same
	// whatever the size of the fleet elsewhere.
	Concurrency int
	// Verifier, if set, reads the real version of every tenant the
	// catalog says is already at the target (batched, Concurrency
	// connections at a time) before skipping it: a tenant migrated out of
	// band (the stock CLI's down, a restore) is migrated, not skipped.
	Verifier VersionReader
	// LockBatch is how many tenants' locks are taken per statement
	// (default 32); RecordBatch how many outcomes are recorded per
	// statement at most (default 64), RecordDelay how long an outcome
	// waits at most for others to share its statement (default 20 ms).
	LockBatch   int
	RecordBatch int
	RecordDelay time.Duration
	// MaxFailures, if above 0, stops a run once that many tenants have
	// failed: no tenant is started after it (a bad migration stops the
	// rollout); running ones finish. Failures are counted as each worker
	// finishes, not when its outcome is recorded a batch later, so a fast
	// failing migration cannot run through the fleet before the count
	// catches up.
	MaxFailures int
}

// Skip says why t needs no run for op, or "" if it does. A no-op run over
// thousands of tenants decides from the catalog alone, without opening any
// tenant database; a tenant that does run has its recorded version checked
// against its own migrations table.
func (f *Fleet) Skip(t *Tenant, op MigrationOp) string {
	if t.Provisioning != ProvisionReady {
		return "not provisioned (" + string(t.Provisioning) + ")"
	}
	if t.Status == StatusDeleted {
		return "deleted (its database is closed until it is purged or undeleted)"
	}
	if t.SchemaDirty {
		return ""
	}
	switch {
	case op.Kind == MigrateUp && t.SchemaVersion == f.Latest:
		return "at latest"
	case op.Kind == MigrateGoto && t.SchemaVersion == op.Version:
		return "at target"
	}
	return ""
}

// interrupted is the Skipped reason of tenants a cancelled (or stopped)
// run never started.
const interrupted = "interrupted before it started"

// notStarted is the result of a tenant a run never started: as it was.
func notStarted(t *Tenant) MigrationResult {
	return MigrationResult{Tenant: t, From: t.SchemaVersion, To: t.SchemaVersion, Dirty: t.SchemaDirty, Skipped: interrupted}
}

// stopper is when a run stops starting tenants: when its ctx ends, or
// once MaxFailures tenants have failed, on every server of the run.
type stopper struct {
	start  context.Context // ends when no tenant may be started any more
	cancel context.CancelFunc
	max    int64
	failed atomic.Int64
}

func newStopper(ctx context.Context, maxFailures int) *stopper {
	start, cancel := context.WithCancel(ctx)
	return &stopper{start: start, cancel: cancel, max: int64(maxFailures)}
}

// finished counts a worker's outcome, stopping the run at the limit.
func (s *stopper) finished(r MigrationResult) {
	if r.Err != nil && s.max > 0 && s.failed.Add(1) == s.max {
		s.cancel()
	}
}

// lockSet is one TryLockTenants statement's locks, shared by the tenants
// it locked: closed when the last of them is recorded and unlocked.
type lockSet struct {
	locks   TenantLocks
	mu      sync.Mutex
	pending int  // tenants handed to workers and not yet released
	sealed  bool // no more tenants will be handed out
}

// release unlocks ids (already handed out, or never to be) and closes
// the set when nothing is left.
func (s *lockSet) release(ids []int64, handedOut bool) {
	s.locks.Unlock(ids)
	s.mu.Lock()
	if handedOut {
		s.pending -= len(ids)
	}
	done := s.sealed && s.pending == 0
	s.mu.Unlock()
	if done {
		s.locks.Close()
	}
}

// give hands tenant i, locked in s, to a worker, which releases it; false
// (i not handed out, and still to release) when ctx ended first.
func (s *lockSet) give(ctx context.Context, work chan<- job, i int) bool {
	s.mu.Lock()
	s.pending++
	s.mu.Unlock()
	select {
	case work <- job{i: i, set: s}:
		return true
	case <-ctx.Done():
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
		return false
	}
}

func (s *lockSet) seal() {
	s.mu.Lock()
	s.sealed = true
	done := s.pending == 0
	s.mu.Unlock()
	if done {
		s.locks.Close()
	}
}

// job is one tenant handed to a worker: under a lock of set, or (set nil)
// to be locked by the worker, waiting for whoever holds it.
type job struct {
	i   int
	set *lockSet
}

// finished is a worker's result on its way to the catalog.
type finished struct {
	i      int
	r      MigrationResult
	record bool     // the run took the lock: record it
	set    *lockSet // release the lock in set, or
	unlock func()   // with this
}

// Run applies op to tenants and calls report with each result, from one
// goroutine at a time, as tenants finish and are recorded. When ctx ends
// no new tenant is started; running ones finish their current migration
// and are recorded. It returns the results in the order of tenants;
// tenants never started have Skipped set.
//
// Each tenant server's tenants are a run of their own (runOn), all at
// once, each with Concurrency workers.
func (f *Fleet) Run(ctx context.Context, tenants []*Tenant, op MigrationOp, report func(MigrationResult)) []MigrationResult {
	stop := newStopper(ctx, f.MaxFailures)
	defer stop.cancel()
	names, groups := GroupByServer(tenants)
	if len(names) <= 1 {
		return f.runOn(ctx, stop, tenants, op, report)
	}
	var mu sync.Mutex
	serial := func(r MigrationResult) {
		mu.Lock()
		defer mu.Unlock()
		report(r)
	}
	results := make([]MigrationResult, len(tenants))
	var wg sync.WaitGroup
	for _, name := range names {
		idx := groups[name]
		wg.Go(func() {
			mine := make([]*Tenant, len(idx))
			for k, i := range idx {
				mine[k] = tenants[i]
			}
			for k, r := range f.runOn(ctx, stop, mine, op, serial) {
				results[idx[k]] = r
			}
		})
	}
	wg.Wait()
	return results
}

// GroupByServer splits tenants by server: the servers in order of first
// appearance, and each one's tenants as indexes into tenants.
func GroupByServer(tenants []*Tenant) (names []string, groups map[string][]int) {
	groups = map[string][]int{}
	for i, t := range tenants {
		name := t.ServerName()
		if groups[name] == nil {
			names = append(names, name)
		}
		groups[name] = append(groups[name], i)
	}
	return names, groups
}

// runOn is Run on one server's tenants.
//
// Tenants are locked in batches (LockBatch per statement, without
// waiting): a tenant whose lock is held elsewhere (being provisioned,
// deleted or migrated by another runner) is set aside and, once every
// other tenant has been handed out, waited for and migrated alone. The
// runner therefore never waits for a lock while holding others it has
// not yet worked on, so two runners cannot block each other.
//
// Migrations run under ctx; tenants are handed out only until stop says so.
func (f *Fleet) runOn(ctx context.Context, stop *stopper, tenants []*Tenant, op MigrationOp, report func(MigrationResult)) []MigrationResult {
	tenants = slices.Clone(tenants) // verify replaces drifted ones: not in the caller's slice
	results := make([]MigrationResult, len(tenants))
	started := make([]bool, len(tenants))
	var drift []string // set by verify before any result is published
	var mu sync.Mutex
	publish := func(i int, r MigrationResult) {
		mu.Lock()
		defer mu.Unlock()
		if r.NotStarted() {
			results[i] = r // declined by its worker: counted with those never started
			return
		}
		if r.Skipped == "" && drift != nil {
			r.Drift = drift[i]
		}
		results[i] = r
		report(r)
	}

	work := make(chan job)
	out := make(chan finished, 256)
	var workers sync.WaitGroup
	for w := 0; w < max(1, f.Concurrency); w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range work {
				if stop.start.Err() != nil {
					// Handed out as the run stopped (the dispatcher's
					// select may pick the job over the stop): not
					// started, its lock released when "recorded".
					out <- finished{i: j.i, set: j.set, r: notStarted(tenants[j.i])}
					continue
				}
				fin := f.work(ctx, tenants[j.i], op, j)
				stop.finished(fin.r)
				out <- fin
			}
		}()
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		f.record(ctx, out, publish)
	}()

	skip, found := f.verify(ctx, tenants, op, publish)
	mu.Lock()
	drift = found
	mu.Unlock()
	f.dispatch(stop.start, tenants, op, skip, work, started, publish)
	close(work)
	workers.Wait()
	close(out)
	<-recorded

	for i, ok := range started {
		if !ok {
			results[i] = notStarted(tenants[i])
		}
	}
	return results
}

// dispatch hands tenants to the workers: skipped ones are reported at
// once, the others locked a batch at a time, then the contested ones.
func (f *Fleet) dispatch(ctx context.Context, tenants []*Tenant, op MigrationOp, skip func(int) (string, bool), work chan<- job, started []bool, publish func(int, MigrationResult)) {
	d := &dispatcher{ctx: ctx, catalog: f.Catalog, tenants: tenants, work: work, started: started}
	batch := f.LockBatch
	if batch <= 0 {
		batch = 32
	}
	seen := map[int64]bool{}
	for i, t := range tenants {
		if ctx.Err() != nil {
			return
		}
		if reason, decided := skip(i); decided {
			started[i] = true
			if reason != "" {
				publish(i, MigrationResult{Tenant: t, From: t.SchemaVersion, To: t.SchemaVersion, Dirty: t.SchemaDirty, Skipped: reason})
			}
			continue
		}
		if seen[t.ID] {
			d.deferred = append(d.deferred, i) // listed twice: after the first is done
			continue
		}
		seen[t.ID] = true
		d.chunk = append(d.chunk, i)
		if len(d.chunk) == batch && !d.handOut() {
			return
		}
	}
	if !d.handOut() {
		return
	}
	// The contested ones, each locked by its worker (waiting for whoever
	// holds it), in the order given.
	slices.Sort(d.deferred)
	for _, i := range d.deferred {
		select {
		case <-ctx.Done():
			return
		case work <- job{i: i}:
			started[i] = true
		}
	}
}

// dispatcher is the state of one dispatch: the batch being gathered and
// the tenants left for later (locked by another, or listed twice).
type dispatcher struct {
	ctx      context.Context
	catalog  FleetCatalog
	tenants  []*Tenant
	work     chan<- job
	started  []bool
	chunk    []int // indexes into tenants, to lock in one round trip
	deferred []int
}

// handOut locks the chunk's tenants in one round trip and hands the ones
// it got to the workers; the others are deferred. False when ctx ended.
func (d *dispatcher) handOut() bool {
	chunk := d.chunk
	d.chunk = nil
	if len(chunk) == 0 {
		return d.ctx.Err() == nil
	}
	locks, held, err := d.catalog.TryLockTenants(d.ctx, d.ids(chunk))
	if err != nil {
		// Each is tried again alone (and its error reported) later.
		d.deferred = append(d.deferred, chunk...)
		return d.ctx.Err() == nil
	}
	set := &lockSet{locks: locks}
	defer set.seal()
	var mine []int
	for k, i := range chunk {
		if held[k] {
			mine = append(mine, i)
		} else {
			d.deferred = append(d.deferred, i)
		}
	}
	for k, i := range mine {
		if !set.give(d.ctx, d.work, i) {
			set.release(d.ids(mine[k:]), false)
			return false
		}
		d.started[i] = true
	}
	return true
}

func (d *dispatcher) ids(indexes []int) []int64 {
	out := make([]int64, len(indexes))
	for k, i := range indexes {
		out[k] = d.tenants[i].ID
	}
	return out
}

// verify reads the real versions of the tenants the catalog alone would
// skip (with a Verifier) and replaces, in tenants, each one whose table
// differs by a copy carrying the real version, so that it runs from there.
// The returned skip tells dispatch, for tenant i, the reason to skip it
// and whether it was decided already (a failed read is published here);
// drift[i] says how tenant i's table differed from the catalog.
func (f *Fleet) verify(ctx context.Context, tenants []*Tenant, op MigrationOp, publish func(int, MigrationResult)) (skip func(int) (string, bool), drift []string) {
	reasons := make([]string, len(tenants))
	drift = make([]string, len(tenants))
	var check []int
	for i, t := range tenants {
		reasons[i] = f.Skip(t, op)
		if reasons[i] != "" && f.Verifier != nil && t.Provisioning == ProvisionReady {
			check = append(check, i)
		}
	}
	failed := make([]bool, len(tenants))
	if len(check) > 0 {
		batch := make([]*Tenant, len(check))
		for k, i := range check {
			batch[k] = tenants[i]
		}
		for k, real := range f.Verifier.ReadVersions(ctx, batch, f.Concurrency) {
			i, t := check[k], tenants[check[k]]
			switch d := Drift(t, real); {
			case real.Err != nil:
				failed[i] = true
				publish(i, MigrationResult{Tenant: t, From: t.SchemaVersion, To: t.SchemaVersion, Dirty: t.SchemaDirty, Err: fmt.Errorf("verify the version: %w", real.Err)})
			case d != "":
				c := *t
				c.SchemaVersion, c.SchemaDirty = real.Version, real.Dirty
				tenants[i] = &c
				reasons[i] = f.Skip(&c, op)
				drift[i] = d
			default:
				reasons[i] += " (verified)"
			}
		}
	}
	return func(i int) (string, bool) { return reasons[i], failed[i] || reasons[i] != "" }, drift
}

// work migrates one tenant (locking it first unless its batch did).
func (f *Fleet) work(ctx context.Context, t *Tenant, op MigrationOp, j job) finished {
	r := MigrationResult{Tenant: t, From: t.SchemaVersion, To: t.SchemaVersion, Dirty: t.SchemaDirty}
	start := time.Now()
	fin := finished{i: j.i, set: j.set}
	if j.set == nil {
		unlock, err := f.Catalog.LockTenantWait(ctx, t.ID)
		if err != nil {
			r.Err = fmt.Errorf("lock tenant: %w", err)
			fin.r = r
			return fin
		}
		fin.unlock = unlock
	}
	// The version read inside Migrate is taken under the lock, so "from"
	// is what this runner found, not what another runner left behind.
	out := f.Migrator.Migrate(ctx, t, op)
	r.Duration = time.Since(start)
	r.From, r.To, r.Dirty, r.Err, r.Clean = out.From, out.To, out.Dirty, out.Err, out.Clean
	if r.Err == nil && r.To > f.Latest {
		r.Err = fmt.Errorf("tenant is at version %d, newer than this binary knows (%d)", r.To, f.Latest)
	}
	fin.r, fin.record = r, true
	return fin
}

// record stores the workers' results in the catalog, many per statement,
// then releases their locks and publishes them. Outcomes are recorded
// even if ctx has ended: the catalog must say what happened.
func (f *Fleet) record(ctx context.Context, in <-chan finished, publish func(int, MigrationResult)) {
	size, delay := f.RecordBatch, f.RecordDelay
	if size <= 0 {
		size = 64
	}
	if delay <= 0 {
		delay = 20 * time.Millisecond
	}
	var batch []finished
	flush := func() {
		f.flush(ctx, batch, publish)
		batch = batch[:0]
	}
	for {
		fin, ok := <-in
		if !ok {
			return
		}
		batch = append(batch, fin)
		timer := time.NewTimer(delay)
	collect:
		for len(batch) < size {
			select {
			case fin, ok := <-in:
				if !ok {
					timer.Stop()
					flush()
					return
				}
				batch = append(batch, fin)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		flush()
	}
}

func (f *Fleet) flush(ctx context.Context, batch []finished, publish func(int, MigrationResult)) {
	var recs []MigrationRecord
	var idx []int // batch index of each record
	for k, fin := range batch {
		if !fin.record {
			continue
		}
		msg := ""
		if fin.r.Err != nil {
			msg = fin.r.Err.Error()
		}
		recs = append(recs, MigrationRecord{TenantID: fin.r.Tenant.ID, Version: fin.r.To, Dirty: fin.r.Dirty, Error: msg})
		idx = append(idx, k)
	}
	if len(recs) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		found, err := f.Catalog.RecordMigrations(rctx, recs)
		cancel()
		for n, k := range idx {
			r := &batch[k].r
			switch {
			case r.Err != nil:
			case err != nil:
				r.Err = fmt.Errorf("migrated, but recording it in the catalog failed: %w", err)
			case !found[n]:
				r.Err = fmt.Errorf("migrated, but recording it in the catalog failed: %w", Errorf(NotFound, "tenant %d not found", r.Tenant.ID))
			}
		}
	}
	// Unlocked only once recorded: the next runner on a tenant finds the
	// catalog up to date.
	bySet := map[*lockSet][]int64{}
	for _, fin := range batch {
		switch {
		case fin.set != nil:
			bySet[fin.set] = append(bySet[fin.set], fin.r.Tenant.ID)
		case fin.unlock != nil:
			fin.unlock()
		}
	}
	for set, ids := range bySet {
		set.release(ids, true)
	}
	for _, fin := range batch {
		publish(fin.i, fin.r)
	}
}

// FleetSummary counts a fleet's state for `migrate tenants status` and the
// end of a run.
type FleetSummary struct {
	AtLatest, Behind, Ahead, Dirty, Failed, NotReady int
}

// Summarize counts tenants against the latest version.
func Summarize(tenants []*Tenant, latest uint) FleetSummary {
	var s FleetSummary
	for _, t := range tenants {
		s.add(t, latest)
	}
	return s
}

// add counts t in s.
func (s *FleetSummary) add(t *Tenant, latest uint) {
	switch {
	case t.Provisioning != ProvisionReady:
		s.NotReady++
	case t.SchemaDirty:
		s.Dirty++
	case t.MigrationError != "":
		s.Failed++
	case t.SchemaVersion == latest:
		s.AtLatest++
	case t.SchemaVersion < latest:
		s.Behind++
	default:
		s.Ahead++
	}
}

// Total is how many tenants s counts.
func (s FleetSummary) Total() int {
	return s.AtLatest + s.Behind + s.Ahead + s.Dirty + s.Failed + s.NotReady
}

// SummarizeByServer is Summarize for the tenants of each server.
func SummarizeByServer(tenants []*Tenant, latest uint) map[string]FleetSummary {
	out := map[string]FleetSummary{}
	for _, t := range tenants {
		s := out[t.ServerName()]
		s.add(t, latest)
		out[t.ServerName()] = s
	}
	return out
}

// RetryCommand is the command that migrates a tenant again: after its last
// migration failed (the schema clean), or when its migrations table was
// found to differ from what the catalog records.
func RetryCommand(slug string) string {
	return "controlplane migrate tenants up --tenant " + slug
}

// RepairCommand is the exact command that clears a dirty tenant whose
// schema is known to be at version clean (-1: no version at all, before
// the first migration): force that version, then migrate up again once
// the failed file is fixed.
func RepairCommand(slug string, clean int64) string {
	return fmt.Sprintf("controlplane migrate tenants force %d --tenant %s && controlplane migrate tenants up --tenant %s", clean, slug, slug)
}

// RepairAdvice is how to clear a tenant the catalog records as dirty at
// version v, when how it got there is not known (the dirty flag alone
// does not say): golang-migrate marks a failed up of v dirty at v with the
// schema still at the version before it (the file ran in a transaction),
// and a failed down from the version after v dirty at v with the schema
// still at that later version. versions are the tenant migrations, in
// order. The advice names both, with their exact commands.
func RepairAdvice(t *Tenant, versions []uint) string {
	prev, next := int64(-1), int64(-1)
	for _, v := range versions {
		switch {
		case v < t.SchemaVersion:
			prev = int64(v)
		case v > t.SchemaVersion && next < 0:
			next = int64(v)
		}
	}
	advice := fmt.Sprintf("if an up of %d failed: %s", t.SchemaVersion, RepairCommand(t.Slug, prev))
	if next >= 0 {
		advice += fmt.Sprintf("; if a down from %d failed: %s", next, RepairCommand(t.Slug, next))
	}
	return advice + " (a file that cannot run in a transaction may be half applied: inspect the schema first)"
}

// SortBySlug orders tenants for stable reports.
func SortBySlug(ts []*Tenant) {
	slices.SortFunc(ts, func(a, b *Tenant) int {
		switch {
		case a.Slug < b.Slug:
			return -1
		case a.Slug > b.Slug:
			return 1
		}
		return 0
	})
}

// VersionRead is the real state of one tenant's migrations table.
type VersionRead struct {
	Version uint
	Dirty   bool
	Err     error
}

// VersionReader reads the real versions of tenants' migrations tables,
// many at once (out[i] for tenants[i]), to find tenants migrated out of
// band: the catalog only knows what the control plane did.
type VersionReader interface {
	ReadVersions(ctx context.Context, tenants []*Tenant, concurrency int) []VersionRead
}

// Drift describes how a tenant's real migrations table differs from what
// the catalog recorded, or "" when they agree.
func Drift(t *Tenant, real VersionRead) string {
	if real.Err != nil || (real.Version == t.SchemaVersion && real.Dirty == t.SchemaDirty) {
		return ""
	}
	state := func(v uint, dirty bool) string {
		if dirty {
			return fmt.Sprintf("%d (dirty)", v)
		}
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("the catalog records version %s, the tenant's migrations table is at %s (migrated out of band)",
		state(t.SchemaVersion, t.SchemaDirty), state(real.Version, real.Dirty))
}
