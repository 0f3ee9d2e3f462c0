package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// build compiles pkg (relative to the module root) into out. overlay, if
// not empty, maps files of the module (relative paths) to files that
// replace or add them for this build only: `go build -overlay` is how the
// variants with extra tenant migrations (embedded with go:embed) and the
// pprof-enabled serve are made without touching the checkout, which other
// engineers edit at the same time.
//
// -s -w leaves out the symbol table and DWARF, which serve debuggers
// only (stack traces and pprof read the runtime's own tables): it runs
// the same code and saves about a third of each link's CPU, which the
// smoke run inside make test pays for four binaries.
func build(ctx context.Context, root, out, pkg string, overlay map[string]string) error {
	args := []string{"build", "-ldflags=-s -w", "-o", out}
	if len(overlay) > 0 {
		repl := map[string]string{}
		for rel, file := range overlay {
			repl[filepath.Join(root, rel)] = file
		}
		doc, err := json.Marshal(map[string]any{"Replace": repl})
		if err != nil {
			return err
		}
		path := out + ".overlay.json"
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			return err
		}
		args = append(args, "-overlay", path)
	}
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// freeAddr returns a loopback address with a port nobody listens on. The
// port could be taken between this and the server's bind; the server then
// fails to start and says so.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is a server the harness started: the product's serve or the
// baseline. Its stderr is kept (the tail) for error messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
	base string // http://addr
	logs *tail
	done chan struct{}
	err  error
}

// baseEnv is the environment every subprocess starts from: nothing of the
// harness's own environment leaks in (an ADMIN_TOKEN or PG* variables
// there would change what is measured), only what a process needs to run.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOCACHE", "GOPATH", "GOMODCACHE", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// startProc runs bin with args and env (added to baseEnv) and waits until
// GET /healthz on addr answers 200. tap, if not nil, receives the
// process's output too (benchmark 9 reads serve's log lines from it).
func startProc(ctx context.Context, name, bin string, args []string, env map[string]string, addr string, tap io.Writer) (*proc, error) {
	p := &proc{name: name, addr: addr, base: "http://" + addr, logs: &tail{max: 8 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = baseEnv()
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	var out io.Writer = p.logs
	if tap != nil {
		out = io.MultiWriter(p.logs, tap)
	}
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	// Its own process group: a Ctrl-C of make bench reaches the harness,
	// which stops its servers in order (drain, then exit). Should the
	// harness die without doing so, the kernel kills them.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start (%v): %s", name, p.err, p.logs.String())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer /healthz within 2 minutes: %s", name, p.logs.String())
		}
	}
}

// stop ends the server: SIGTERM (it drains), SIGKILL after 15 s.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// status reads a field of /proc/PID/status in kB (VmRSS, VmHWM).
func (p *proc) status(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return procField(b, field)
}

func procField(status []byte, field string) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// cpu returns the user+system CPU time the process has used so far.
func (p *proc) cpu() (time.Duration, error) {
	return procCPU(p.cmd.Process.Pid)
}

func procCPU(pid int) (time.Duration, error) {
	_, self, _, err := procTimes(pid)
	return self, err
}

// procTimes reads /proc/PID/stat: the parent's pid, the process's own
// user+system CPU time, and that of its children that ended (and were
// waited for).
func procTimes(pid int) (ppid int, self, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name (field 2) may hold spaces: count from after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0, 0, errors.New("short /proc stat")
	}
	var v [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} { // fields 4 (ppid), 14-17 (utime, stime, cutime, cstime)
		if v[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return 0, 0, 0, err
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	return int(v[0]), tick(v[1] + v[2]), tick(v[3] + v[4]), nil
}

// treeCPU is the CPU time used so far by process pid and its children,
// those running (their own time) and those that ended (pid's children's
// time): for a postmaster, every backend it ever started, including
// those that connected and left between two readings.
func treeCPU(pid int) (time.Duration, error) {
	_, self, ended, err := procTimes(pid)
	if err != nil {
		return 0, err
	}
	total := self + ended
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range entries {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ppid, self, ended, err := procTimes(child); err == nil && ppid == pid {
			total += self + ended
		}
	}
	return total, nil
}

// runCmd runs a command to completion and returns its stdout and the wall
// time it took; a failure carries the end of its stderr.
func runCmd(ctx context.Context, bin string, args []string, env map[string]string) ([]byte, time.Duration, error) {
	return runCmdDir(ctx, "", bin, args, env)
}

// runCmdDir is runCmd in directory dir ("" is the current one).
func runCmdDir(ctx context.Context, dir, bin string, args []string, env map[string]string) ([]byte, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = baseEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	errw := &tail{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &out, errw
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return out.Bytes(), took, fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, errw.String())
	}
	return out.Bytes(), took, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// lineTap keeps the lines of a process's output that contain one of its
// substrings (the rest of the output goes by): serve's log lines that the
// harness reads, with LOG_LEVEL=info and a line per request going by.
type lineTap struct {
	mu    sync.Mutex
	match [][]byte
	part  []byte // the line being written
	lines []string
}

func newLineTap(match ...string) *lineTap {
	t := &lineTap{}
	for _, m := range match {
		t.match = append(t.match, []byte(m))
	}
	return t
}

func (t *lineTap) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(t.part) < 1<<16 { // a line longer than that is not a log line the harness reads
				t.part = append(t.part, b...)
			}
			break
		}
		line := b[:i]
		if len(t.part) > 0 {
			line = append(t.part, line...)
		}
		for _, m := range t.match {
			if bytes.Contains(line, m) {
				t.lines = append(t.lines, string(line))
				break
			}
		}
		t.part = t.part[:0]
		b = b[i+1:]
	}
	return n, nil
}

// Lines returns the lines kept so far.
func (t *lineTap) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// String is the last lines kept, for an error message.
func (t *lineTap) String() string {
	l := t.Lines()
	return strings.Join(l[max(0, len(l)-10):], "\n")
}
