package controlplane

import (
	"context"
	"encoding/json"
	"time"
)

// AuditEntry is one operator action in the audit trail.
type AuditEntry struct {
	ID       int64             `json:"id"`
	At       time.Time         `json:"at"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	TenantID *int64            `json:"tenant_id"`
	Target   string            `json:"target"`
	Diff     map[string]Change `json:"diff"`
}

// Change is a field's value before and after an action.
type Change struct {
	Before any `json:"before"`
	After  any `json:"after"`
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	TenantID      *int64
	Limit, Offset int
}

type actorKey struct{}

// WithActor names who acts in ctx: "operator", "key:7", "cli:alice@host",
// "system". The stores record it in the audit trail.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor of ctx, "system" if none was named.
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}

// TenantDiff lists the operator-visible fields that differ between before
// and after (either may be nil, for a create or a delete). It holds no
// secret: tenants have none.
func TenantDiff(before, after *Tenant) map[string]Change {
	fields := func(t *Tenant) map[string]any {
		if t == nil {
			return map[string]any{}
		}
		return map[string]any{
			"name": t.Name, "slug": t.Slug, "domain": t.Domain, "status": t.Status, "timezone": t.Timezone,
			"max_extensions": t.MaxExtensions, "settings": json.RawMessage(t.Settings), "isolation": t.Isolation,
			"server": t.Server,
		}
	}
	b, a := fields(before), fields(after)
	out := map[string]Change{}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !equalJSON(bv, av) {
			out[k] = Change{Before: bv, After: av}
		}
	}
	for k, bv := range b {
		if _, ok := a[k]; !ok {
			out[k] = Change{Before: bv, After: nil}
		}
	}
	return out
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
