package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// onCluster is a control plane whose catalog and tenant server are a
// private cluster the test stops and starts.
func onCluster(t *testing.T, isolation controlplane.Isolation) (*bundle, *pgtest.Cluster) {
	t.Helper()
	c := pgtest.NewCluster(t)
	db := pgtest.DB{Name: "controlplane", URL: c.URL, Prefix: "t_"}
	return setupOn(t, db, isolation, "RECONCILE_INTERVAL=1h"), c
}

// The PostgreSQL server is stopped (fast shutdown: every session ended)
// and started again under a steady load of writes: no write that was
// acknowledged (201) is lost, every request answers 201 or 503 (never a
// 500), and writes succeed again after the restart without restarting
// the control plane.
func TestServerRestartUnderLoadLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	for _, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			b, cluster := onCluster(t, isolation)
			b.create(seed())

			var mu sync.Mutex
			acked := map[string]bool{}
			statuses := map[int]int{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						name := fmt.Sprintf("w%d-%d", w, i)
						status, _, _ := b.req("POST", "acme.example.com", "/api/contacts", map[string]any{"name": name})
						mu.Lock()
						statuses[status]++
						if status == http.StatusCreated {
							acked[name] = true
						}
						mu.Unlock()
						if status != http.StatusCreated {
							time.Sleep(20 * time.Millisecond)
						}
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			cluster.Stop()
			time.Sleep(time.Second)
			cluster.Start()
			// Writes succeed again, without restarting the control plane.
			require.Eventually(t, func() bool {
				status, _, _ := b.req("POST", "acme.example.com", "/api/contacts", map[string]any{"name": "after-" + time.Now().Format("150405.000000")})
				return status == http.StatusCreated
			}, 30*time.Second, 100*time.Millisecond, "writes recover after the restart")
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()

			t.Logf("statuses under the restart: %v, %d acknowledged", statuses, len(acked))
			for status := range statuses {
				require.Contains(t, []int{http.StatusCreated, http.StatusServiceUnavailable}, status, "every answer is 201 or 503: %v", statuses)
			}
			require.Positive(t, statuses[http.StatusServiceUnavailable], "the outage was seen")
			require.Positive(t, statuses[http.StatusCreated])

			stored := map[string]bool{}
			for offset := 0; ; offset += 500 {
				status, got := b.tenantGet(fmt.Sprintf("/api/contacts?limit=500&offset=%d", offset))
				require.Equal(t, http.StatusOK, status, "%v", got)
				page := got["data"].([]any)
				for _, c := range page {
					stored[c.(map[string]any)["name"].(string)] = true
				}
				if len(page) < 500 {
					break
				}
			}
			for name := range acked {
				require.True(t, stored[name], "acknowledged write %s was lost", name)
			}
		})
	}
}

// tenantGet is a GET of acme's tenant API.
func (b *bundle) tenantGet(path string) (int, map[string]any) {
	status, _, got := b.req("GET", "acme.example.com", path, nil)
	return status, got
}

// The catalog (here the same server as the tenants') is stopped while
// creates are in flight and started again: each create answers 201 or 503
// (never a 500), and one reconciler pass later, without restarting the
// control plane, every tenant recorded is ready (or failed, and ready
// after a retry) and nothing is left behind on the server.
func TestCatalogRestartDuringCreates(t *testing.T) {
	t.Parallel()
	for _, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(isolation), func(t *testing.T) {
			t.Parallel()
			b, cluster := onCluster(t, isolation)
			b.create(tenantBody("warm", isolation)) // the template exists: creates are short

			var wg sync.WaitGroup
			results := make([]int, 6)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(i) * 40 * time.Millisecond) // spread over the stop
					results[i], _ = b.do("POST", "/api/tenants", tenantBody(fmt.Sprintf("during-%d", i), isolation))
				}()
			}
			time.Sleep(100 * time.Millisecond)
			cluster.Stop()
			time.Sleep(500 * time.Millisecond)
			cluster.Start()
			wg.Wait()
			t.Logf("create statuses: %v", results)
			for _, status := range results {
				require.Contains(t, []int{http.StatusCreated, http.StatusServiceUnavailable}, status, "%v", results)
			}

			ctx := context.Background()
			require.Eventually(t, func() bool { return b.app.Reconciler.Pass(ctx, 0) }, 30*time.Second, 200*time.Millisecond)
			status, got := b.do("GET", "/api/tenants?limit=100", nil)
			require.Equal(t, http.StatusOK, status, "%v", got)
			for _, x := range got["data"].([]any) {
				tn := x.(map[string]any)
				switch tn["provisioning"] {
				case "ready":
				case "failed":
					status, got := b.do("POST", fmt.Sprintf("/api/tenants/%v/provision", tn["id"]), nil)
					require.Equal(t, http.StatusOK, status, "%v", got)
				default:
					t.Fatalf("tenant %v is %v after the reconciler's pass", tn["slug"], tn["provisioning"])
				}
			}
			auditLeftovers(t, b)
		})
	}
}
