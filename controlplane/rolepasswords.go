package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Tenant role passwords. Every database-mode tenant has a login role whose
// password is derived from one role secret (TENANT_ROLE_SECRET, or a random
// secret kept in the catalog). The catalog records a tag of the secret the
// roles were last all set from; a process about to use the passwords with a
// secret of another tag (the first start after an upgrade, a changed
// TENANT_ROLE_SECRET, a rotation a crash cut short) resets them all first,
// and records its tag only once every one succeeded. Setting a password is
// idempotent, so a run cut short is simply run again.

// RolePasswordCatalog is the catalog's side of role password rotations.
type RolePasswordCatalog interface {
	// LockRolePasswords waits for the catalog-wide rotation lock.
	LockRolePasswords(ctx context.Context) (unlock func(), err error)
	// RolePasswordsTag is the tag recorded by the last complete rotation,
	// "" if none.
	RolePasswordsTag(ctx context.Context) (string, error)
	SetRolePasswordsTag(ctx context.Context, tag string, roles int) error
	TenantsByProvisioning(ctx context.Context, states ...ProvisionState) ([]Tenant, error)
}

// RoleRotator sets a tenant role's password from the current secret.
type RoleRotator interface {
	RotateRolePassword(ctx context.Context, t *Tenant) error
}

// RolePasswords keeps the tenant roles' passwords in step with the secret
// in use.
type RolePasswords struct {
	Catalog RolePasswordCatalog
	Roles   RoleRotator
	// Tag identifies the secret in use without revealing it
	// (tenantdb.RoleSecret.Tag).
	Tag string
	// Concurrency is how many roles are set at once (default 4: a
	// password's SCRAM verifier costs a few milliseconds of CPU).
	Concurrency int
}

// RoleRotation is what a Sync did.
type RoleRotation struct {
	// Ran is false when the roles were set from this secret already.
	Ran bool
	// Reason says why it ran: "forced", "no rotation recorded yet" or
	// "secret changed".
	Reason          string
	Rotated, Failed int
}

// Sync resets the password of every ready database-mode tenant's role to
// the current secret's, unless the catalog records that they were last all
// set from it (force runs anyway), then records the secret's tag. Tenants
// that are not ready need nothing: provisioning one (a retry, the
// reconciler) sets its role's password. Replicas take turns; one that
// waited finds the work done. The error joins each tenant's failure, and
// then the tag is not recorded: the next Sync runs again.
func (r *RolePasswords) Sync(ctx context.Context, force bool) (RoleRotation, error) {
	unlock, err := r.Catalog.LockRolePasswords(ctx)
	if err != nil {
		return RoleRotation{}, fmt.Errorf("lock tenant role passwords: %w", err)
	}
	defer unlock()
	last, err := r.Catalog.RolePasswordsTag(ctx)
	if err != nil {
		return RoleRotation{}, fmt.Errorf("read tenant role passwords' tag: %w", err)
	}
	out := RoleRotation{Ran: true, Reason: "forced"}
	switch {
	case last == r.Tag && !force:
		return RoleRotation{}, nil
	case force:
	case last == "":
		out.Reason = "no rotation recorded yet"
	default:
		out.Reason = "secret changed"
	}
	// Read under the lock, from the catalog rather than a cache that may
	// not have heard of another replica's latest tenants.
	all, err := r.Catalog.TenantsByProvisioning(ctx, ProvisionReady)
	if err != nil {
		return out, fmt.Errorf("list tenants: %w", err)
	}
	var ts []*Tenant
	for i := range all {
		if all[i].Isolation == IsolationDatabase {
			ts = append(ts, &all[i])
		}
	}
	SortBySlug(ts)
	workers := r.Concurrency
	if workers < 1 {
		workers = 4
	}
	errs := make([]error, len(ts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(ts)) {
		wg.Go(func() {
			for i := range next {
				if err := r.Roles.RotateRolePassword(ctx, ts[i]); err != nil {
					errs[i] = fmt.Errorf("%s: %w", ts[i].Slug, err)
				}
			}
		})
	}
	for i := range ts {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			out.Failed++
		}
	}
	out.Rotated = len(ts) - out.Failed
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if err := r.Catalog.SetRolePasswordsTag(ctx, r.Tag, out.Rotated); err != nil {
		return out, fmt.Errorf("record tenant role passwords' tag: %w", err)
	}
	return out, nil
}
