package controlplane

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DrainResult is one tenant of a drain: the move that took it off the
// server (or why none did).
type DrainResult struct {
	TenantID int64      `json:"tenant_id"`
	Slug     string     `json:"slug"`
	Target   string     `json:"target,omitempty"`
	Op       *Operation `json:"operation,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Drain moves every tenant in tenants (those on one server, which the
// caller has set draining) to the server placement chooses for each,
// concurrency at a time, each move waited for; report hears each result
// as it comes. Deleted tenants are not moved (purge or undelete them
// first). It returns how many moves failed.
func (o *Operations) Drain(ctx context.Context, tenants []Tenant, place *Placement, mode MoveMode, concurrency int, report func(DrainResult)) (failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(concurrency, 1))
	for i := range tenants {
		t := &tenants[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := o.drainOne(ctx, t, place, mode)
			mu.Lock()
			defer mu.Unlock()
			if r.Error != "" {
				failed++
			}
			report(r)
		}()
	}
	wg.Wait()
	return failed
}

// placeMu makes the drain's placements one at a time: each reads the
// counts the previous move left.
var placeMu sync.Mutex

func (o *Operations) drainOne(ctx context.Context, t *Tenant, place *Placement, mode MoveMode) DrainResult {
	r := DrainResult{TenantID: t.ID, Slug: t.Slug}
	if t.Status == StatusDeleted {
		r.Error = "deleted: purge it (DELETE ?purge=now) or undelete it first"
		return r
	}
	placeMu.Lock()
	target, err := place.Choose(ctx, "")
	var op *Operation
	if err == nil {
		r.Target = target
		op, err = o.StartMove(ctx, t.ID, MoveSpec{Server: target, Mode: mode})
	}
	placeMu.Unlock()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	for op.State == OperationRunning {
		select {
		case <-ctx.Done():
			r.Op, r.Error = op, "interrupted"
			return r
		case <-time.After(200 * time.Millisecond):
		}
		cur, err := o.Store.Operation(context.WithoutCancel(ctx), op.ID)
		if err != nil {
			r.Op, r.Error = op, err.Error()
			return r
		}
		op = cur
	}
	r.Op = op
	if op.State != OperationSucceeded {
		r.Error = fmt.Sprintf("move %s: %s", op.State, op.Error)
	}
	return r
}
