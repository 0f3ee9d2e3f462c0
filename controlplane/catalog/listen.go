package catalog

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/laracopilot/controlplane/controlplane"
)

// The channels the catalog's triggers notify on, with the changed row's id.
const (
	changeChannel = "tenant_changed"
	keyChannel    = "api_key_changed"
)

// Listen keeps the cache coherent with changes made by other control plane
// processes: it LISTENs on the catalog and reloads every tenant it is told
// about. Changes this process makes reach the cache directly (write-through),
// so the notifications matter for replicas. After a lost connection it
// reconnects and reloads the whole catalog, since notifications sent while
// it was away are lost. It returns when ctx ends.
func (s *Store) Listen(ctx context.Context, url string, log *slog.Logger) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, url)
		if ctx.Err() != nil {
			return
		}
		log.Warn("catalog change listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return redact(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel+"; LISTEN "+keyChannel); err != nil {
		return err
	}
	// Listening first, then loading, so no change falls between the two.
	if err := s.LoadCache(ctx); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		id, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			continue
		}
		refresh := s.refresh
		if n.Channel == keyChannel {
			refresh = s.refreshKey
		}
		if err := refresh(ctx, id); err != nil {
			return err
		}
	}
}

// refresh reloads one tenant into the cache, or drops it when it is gone.
// A tenant whose cutover hold just ended goes through OnRelease first, so
// that the requests the hold kept wait no longer than that.
func (s *Store) refresh(ctx context.Context, id int64) error {
	t, err := s.Tenant(ctx, id)
	switch {
	case err == nil:
		if old, ok := s.cache.ByID(id); ok && old.HeldUntil != nil && t.HeldUntil == nil && s.OnRelease != nil {
			s.OnRelease(t)
		}
		s.cache.put(*t)
	case controlplane.ErrorCode(err) == controlplane.NotFound:
		s.cache.remove(id)
	default:
		return err
	}
	return nil
}
