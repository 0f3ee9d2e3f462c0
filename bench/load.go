package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// loadSpec is one closed-loop run: clients goroutines, each sending
// GET /api/extensions/{id} back to back over its own keep-alive
// connection, with a random tenant's Host header and a random id each
// request. Requests that start during warmup are not recorded.
type loadSpec struct {
	base     string   // http://addr
	hosts    []string // the tenants' domains
	ids      int      // extension ids 1..ids exist in every tenant
	clients  int
	warmup   time.Duration
	duration time.Duration
	// retryAfter makes a client answered 429 wait as docs/API.md asks of
	// clients before its next request: its Retry-After, plus a random
	// part of as much again (the burst of benchmark 6: a client ignoring
	// it only measures how fast serve can say no; clients waiting exactly
	// Retry-After, refused together, come back together, every second:
	// on this machine the harness's 1,000 clients and serve then spent
	// ~45 ms of both CPUs per second on that herd alone, which was the
	// other tenants' p99).
	retryAfter bool
	// owners, if set, gives each host's tenant (its database or schema
	// name, which every extension's name ends with): an answer naming
	// another is counted under statusForeign.
	owners map[string]string
}

// statusForeign counts, among a load's statuses, the 200 answers that
// carried another tenant's row: a cross-tenant read.
const statusForeign = -1

// loadResult is what a run measured.
type loadResult struct {
	Total    int // every request sent, warm-up included (for per-request CPU)
	Requests int
	Errors   int // transport errors and non-200 answers
	// WarmErrors is the failures of the warm-up, not in Errors (benchmark
	// 7 stops a server during it).
	WarmErrors int
	FirstErr   string
	// Status counts the answers of the measured window by HTTP status (0:
	// no answer, a transport error).
	Status   map[int]int
	RPS      float64
	P50, P99 time.Duration
}

// newClient returns an HTTP client for n concurrent keep-alive
// connections to one server, and no proxy (an HTTP_PROXY in the
// environment must not sit between the load and the server).
func newClient(n int) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        n,
			MaxIdleConnsPerHost: n,
			DisableCompression:  true,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// runLoad runs s and reports throughput and latency.
func runLoad(ctx context.Context, s loadSpec) loadResult {
	client := newClient(s.clients)
	defer client.CloseIdleConnections()
	paths := make([]string, s.ids)
	for i := range paths {
		paths[i] = s.base + "/api/extensions/" + strconv.Itoa(i+1)
	}
	return closedLoop(ctx, s.clients, s.warmup, s.duration, func(ctx context.Context, rng *rand.Rand) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, paths[rng.IntN(len(paths))], nil)
		req.Host = s.hosts[rng.IntN(len(s.hosts))]
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		var foreign bool
		if s.owners != nil && resp.StatusCode == http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			foreign = !bytes.Contains(body, []byte(" of "+s.owners[req.Host]+`"`))
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if foreign {
			return statusForeign, errors.New(req.Host + ": answered with another tenant's row")
		}
		if s.retryAfter && resp.StatusCode == http.StatusTooManyRequests {
			if wait, ok := retryWait(resp.Header.Get("Retry-After"), rng); ok {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, errors.New(req.Host + ": HTTP " + strconv.Itoa(resp.StatusCode))
		}
		return resp.StatusCode, nil
	})
}

// retryWait is how long a client answered with Retry-After h waits before
// its next request, as docs/API.md asks of clients: h's seconds plus a
// random part of as much again, so that clients refused together do not
// come back together (false: no usable header).
func retryWait(h string, rng *rand.Rand) (time.Duration, bool) {
	secs, err := strconv.Atoi(h)
	if err != nil || secs < 0 {
		return 0, false
	}
	return time.Duration(float64(secs) * (1 + rng.Float64()) * float64(time.Second)), true
}

// closedLoop runs clients workers, each calling op back to back until
// warmup+duration has passed; op returns the HTTP status it got (200 is
// success; 0 with an error when nothing answered). Operations that start
// during warmup are not recorded. The latencies of each worker go to a
// slice of its own (no lock, no shared histogram on the hot path) and are
// merged at the end.
func closedLoop(ctx context.Context, clients int, warmup, duration time.Duration, op func(ctx context.Context, rng *rand.Rand) (int, error)) loadResult {
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	lat := make([][]time.Duration, clients)
	errs := make([]int, clients)
	warmErrs := make([]int, clients)
	total := make([]int, clients)
	firstErr := make([]string, clients)
	status := make([]map[int]int, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
			own := make([]time.Duration, 0, 1<<14)
			st := map[int]int{}
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				total[w]++
				code, err := op(ctx, rng)
				if err != nil && firstErr[w] == "" {
					firstErr[w] = err.Error()
				}
				if t0.Before(measureFrom) {
					if err != nil || code != http.StatusOK {
						warmErrs[w]++
					}
					continue
				}
				st[code]++
				if err != nil || code != http.StatusOK {
					errs[w]++
					continue
				}
				own = append(own, time.Since(t0))
			}
			lat[w], status[w] = own, st
		}()
	}
	wg.Wait()
	r := loadResult{Status: map[int]int{}}
	var all []time.Duration
	for w := range clients {
		all = append(all, lat[w]...)
		r.Errors += errs[w]
		r.WarmErrors += warmErrs[w]
		r.Total += total[w]
		if r.FirstErr == "" {
			r.FirstErr = firstErr[w]
		}
		for code, n := range status[w] {
			r.Status[code] += n
		}
	}
	r.Requests = len(all)
	r.RPS = float64(len(all)) / duration.Seconds()
	slices.Sort(all)
	r.P50, r.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return r
}

// percentile returns the p-quantile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencies collects the durations of one-at-a-time operations
// (provisioning, cold requests) and summarises them.
type latencies []time.Duration

func (l latencies) sorted() []time.Duration {
	s := slices.Clone([]time.Duration(l))
	slices.Sort(s)
	return s
}

func (l latencies) p(q float64) time.Duration { return percentile(l.sorted(), q) }

// medianBy returns the median of f over runs.
func medianBy[R any](runs []R, f func(R) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return median(xs)
}

// median returns the median of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}
