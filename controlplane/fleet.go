package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
}

// MigrationOutcome is what one tenant's run found and left.
type MigrationOutcome struct {
	From, To uint
	Dirty    bool
	Err      error
}

// Migrator runs a migration operation on one tenant's database or schema.
type Migrator interface {
	Migrate(ctx context.Context, t *Tenant, op MigrationOp) MigrationOutcome
}

// FleetCatalog is what a fleet run needs of the catalog.
type FleetCatalog interface {
	// LockTenantWait takes the tenant's lifecycle lock, waiting for it: one
	// runner at a time per tenant, and never beside its provisioning or
	// deletion.
	LockTenantWait(ctx context.Context, id int64) (unlock func(), err error)
	// RecordMigration stores the outcome of a tenant's run.
	RecordMigration(ctx context.Context, id int64, version uint, dirty bool, migErr string) error
}

// MigrationResult is one line of a fleet run's report.
type MigrationResult struct {
	Tenant   *Tenant
	From, To uint
	Dirty    bool
	Skipped  string // why nothing was done ("" if something ran)
	Duration time.Duration
	Err      error
}

// Fleet migrates many tenants with a bounded pool of workers. One tenant's
// failure never stops the others; each tenant's outcome is recorded in the
// catalog as it completes.
type Fleet struct {
	Migrator    Migrator
	Catalog     FleetCatalog
	Latest      uint // the newest tenant migration this binary carries
	Concurrency int
}

// Skip says why t needs no run for op, or "" if it does. A no-op run over
// thousands of tenants decides from the catalog alone, without opening any
// tenant database; a tenant that does run has its recorded version checked
// against its own migrations table.
func (f *Fleet) Skip(t *Tenant, op MigrationOp) string {
	if t.Provisioning != ProvisionReady {
		return "not provisioned (" + string(t.Provisioning) + ")"
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

// Run applies op to tenants and calls report with each result, from one
// goroutine at a time, as tenants finish. When ctx ends no new tenant is
// started; running ones finish their current migration. It returns the
// results in the order of tenants; tenants never started have Skipped set.
func (f *Fleet) Run(ctx context.Context, tenants []*Tenant, op MigrationOp, report func(MigrationResult)) []MigrationResult {
	results := make([]MigrationResult, len(tenants))
	work := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < max(1, f.Concurrency); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := f.one(ctx, tenants[i], op)
				mu.Lock()
				results[i] = r
				report(r)
				mu.Unlock()
			}
		}()
	}
	started := make([]bool, len(tenants))
dispatch:
	for i := range tenants {
		select {
		case <-ctx.Done():
			break dispatch
		case work <- i:
			started[i] = true
		}
	}
	close(work)
	wg.Wait()
	for i, ok := range started {
		if !ok {
			results[i] = MigrationResult{Tenant: tenants[i], From: tenants[i].SchemaVersion, To: tenants[i].SchemaVersion, Skipped: "interrupted before it started"}
		}
	}
	return results
}

func (f *Fleet) one(ctx context.Context, t *Tenant, op MigrationOp) MigrationResult {
	r := MigrationResult{Tenant: t, From: t.SchemaVersion, To: t.SchemaVersion, Dirty: t.SchemaDirty}
	if r.Skipped = f.Skip(t, op); r.Skipped != "" {
		return r
	}
	start := time.Now()
	unlock, err := f.Catalog.LockTenantWait(ctx, t.ID)
	if err != nil {
		r.Err = fmt.Errorf("lock tenant: %w", err)
		return r
	}
	defer unlock()
	// The version read inside Migrate is taken under the lock, so "from"
	// is what this runner found, not what another runner left behind.
	out := f.Migrator.Migrate(ctx, t, op)
	r.Duration = time.Since(start)
	r.From, r.To, r.Dirty, r.Err = out.From, out.To, out.Dirty, out.Err
	if r.Err == nil && r.To > f.Latest {
		r.Err = fmt.Errorf("tenant is at version %d, newer than this binary knows (%d)", r.To, f.Latest)
	}
	msg := ""
	if r.Err != nil {
		msg = r.Err.Error()
	}
	// Recorded even if ctx has ended: the catalog must say what happened.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := f.Catalog.RecordMigration(rctx, t.ID, r.To, r.Dirty, msg); err != nil && r.Err == nil {
		r.Err = fmt.Errorf("migrated, but recording it in the catalog failed: %w", err)
	}
	return r
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
	return s
}

// RepairCommand is the exact command that clears a dirty tenant: golang-
// migrate marks the failed version dirty with the schema at the previous
// version (each file runs in one transaction), so force the previous
// version, then migrate up again once the file is fixed.
func RepairCommand(t *Tenant) string {
	prev := 0
	if t.SchemaVersion > 0 {
		prev = int(t.SchemaVersion) - 1
	}
	return fmt.Sprintf("controlplane migrate tenants force %d --tenant %s && controlplane migrate tenants up --tenant %s", prev, t.Slug, t.Slug)
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
