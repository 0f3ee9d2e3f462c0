package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// TestTenantBurstGets429: a tenant with as many requests in progress as it
// may have (one running, one queued here) gets 429 rate_limited with
// Retry-After for the next, while another tenant is served; once its
// requests end, it is served again.
func TestTenantBurstGets429(t *testing.T) {
	t.Parallel()
	for _, mode := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			b := setup(t, mode, "TENANT_POOL_MAX_CONNS=1", "TENANT_QUEUE_MAX=1")
			b.twoTenants()
			acme := mustSlug(t, b.app, "acme-corp")
			active := 1 // TENANT_POOL_MAX_CONNS; half a lane (2) in schema mode
			if mode == controlplane.IsolationSchema {
				active = 2
			}
			// acme's requests in progress: those running, then one queued.
			var ends []func()
			for range active {
				_, release, err := b.app.Router.Acquire(context.Background(), acme)
				require.NoError(t, err)
				ends = append(ends, release)
			}
			// The queued one: it waits for a slot. Until it is queued, a
			// probe may take the queue's place for a moment and refuse it,
			// so it tries again then.
			queued := make(chan func(), 1)
			go func() {
				for {
					_, release, err := b.app.Router.Acquire(context.Background(), acme)
					if controlplane.ErrorCode(err) == controlplane.RateLimited {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					if err != nil {
						release = func() {}
					}
					queued <- release
					return
				}
			}()
			// Queued for sure once a probe is refused at once, the queue
			// full (a probe that queued itself and timed out is refused
			// too, but for its deadline: that proves nothing).
			require.Eventually(t, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				_, release, err := b.app.Router.Acquire(ctx, acme)
				if err == nil {
					release()
				}
				return controlplane.ErrorCode(err) == controlplane.RateLimited && !errors.Is(err, context.DeadlineExceeded)
			}, 10*time.Second, 10*time.Millisecond)

			status, hdr, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
			require.Equal(t, http.StatusTooManyRequests, status, "%v", got)
			require.Equal(t, "rate_limited", errCode(got))
			require.Equal(t, "1", hdr.Get("Retry-After"))
			require.Contains(t, got["error"].(map[string]any)["message"], "acme-corp")

			status, _, got = b.req("GET", "beta.example.org", "/api/extensions", nil)
			require.Equal(t, http.StatusOK, status, "another tenant is served: %v", got)

			for _, end := range ends {
				end()
			}
			(<-queued)()
			status, _, got = b.req("GET", "acme.example.com", "/api/extensions", nil)
			require.Equal(t, http.StatusOK, status, "served again once its requests ended: %v", got)
		})
	}
}
