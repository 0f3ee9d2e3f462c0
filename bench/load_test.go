package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// TestClosedLoop: every operation is counted by status, failures are not
// latencies, and the first failure is kept.
func TestClosedLoop(t *testing.T) {
	ops := []int{http.StatusOK, http.StatusTooManyRequests, 0}
	var n atomic.Int64 // in turn, not at random: any three operations hold each outcome
	res := closedLoop(context.Background(), 3, 0, 300*time.Millisecond, func(context.Context, *rand.Rand) (int, error) {
		time.Sleep(time.Millisecond)
		switch code := ops[(n.Add(1)-1)%int64(len(ops))]; code {
		case http.StatusOK:
			return code, nil
		case 0:
			return 0, errors.New("refused")
		default:
			return code, errors.New("HTTP 429")
		}
	})
	sum := 0
	for _, n := range res.Status {
		sum += n
	}
	if sum != res.Total || res.Requests != res.Status[http.StatusOK] || res.Errors != sum-res.Requests {
		t.Errorf("total %d, 200s %d, errors %d; statuses %v", res.Total, res.Requests, res.Errors, res.Status)
	}
	if res.Errors == 0 || res.FirstErr == "" || res.Requests == 0 {
		t.Errorf("want successes and failures, got %+v", res)
	}
}

// TestTreeCPU: a child that ended counts in its parent's tree.
func TestTreeCPU(t *testing.T) {
	before, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms.
	if got := after - before; got < child-20*time.Millisecond {
		t.Errorf("the tree's CPU grew by %s, the child alone used %s", got, child)
	}
}
