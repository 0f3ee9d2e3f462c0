package main

import (
	"context"
	"log/slog"
)

// syncRolePasswords sets every tenant role's password from the current
// secret if they were last set from another (see controlplane.RolePasswords)
// and logs one line with the counts when it did. A tenant whose role could
// not be set does not stop the start: the others are served, that tenant's
// new connections fail, and the next start tries again.
func (a *App) syncRolePasswords(ctx context.Context, log *slog.Logger) error {
	r, err := a.RolePasswords.Sync(ctx, false)
	switch {
	case err != nil && r.Failed == 0:
		return err
	case err != nil:
		log.Error("tenant role passwords: some could not be set from the current secret; their tenants cannot open new connections until the next start (or controlplane tenants rotate-role-passwords) sets them",
			"reason", r.Reason, "rotated", r.Rotated, "failed", r.Failed, "err", err)
	case r.Ran:
		log.Info("tenant role passwords set from the current secret", "reason", r.Reason, "rotated", r.Rotated, "failed", 0)
	}
	return nil
}
