package pgtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of the test PostgreSQL server, for tests of
// real outages: pointing a URL at it (Proxy.URL) and then calling Cut makes
// the server vanish for whoever uses that URL (live connections break, new
// ones are refused by the kernel), while every other path to the server
// keeps working; Restore brings it back on the same address. Nothing is
// mocked: the driver sees the errors a real network failure gives.
type Proxy struct {
	t      testing.TB
	target string // host:port of the real server
	addr   string // the proxy's own 127.0.0.1:port, kept across Cut/Restore

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	gen   int          // bumped by every Cut, so a connection accepted before it is not kept
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy on 127.0.0.1 (a free port) to the server rawURL
// names; it is closed when the test ends.
func NewProxy(t testing.TB, rawURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatal("pgtest: the proxy needs a postgres:// URL with a host")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: proxy listen: %v", err)
	}
	p := &Proxy{t: t, target: u.Host, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL returns rawURL with its host and port replaced by the proxy's.
func (p *Proxy) URL(rawURL string) string {
	p.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		p.t.Fatal("pgtest: invalid URL")
	}
	u.Host = p.addr
	return u.String()
}

// Cut breaks every connection through the proxy and stops listening, so
// that new connections are refused (ECONNREFUSED), as when the server's
// host is down. A query in flight sees the connection closed (EOF).
func (p *Proxy) Cut() { p.cut(false) }

// Reset is Cut with a TCP reset instead of a close: a query in flight sees
// "connection reset by peer", as when a firewall or a crashed host drops it.
func (p *Proxy) Reset() { p.cut(true) }

func (p *Proxy) cut(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	p.gen++
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0) // close sends RST
		}
		_ = c.Close()
	}
	clear(p.conns)
}

// Restore listens again on the same address and forwards new connections.
func (p *Proxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	// The port was ours a moment ago; another process taking it in between
	// is unlikely, a socket of ours lingering briefly less so.
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("pgtest: proxy listen again on %s: %v", p.addr, err)
	}
	p.serveLocked(ln)
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	p.ln = ln
	gen := p.gen
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c, gen)
			}()
		}
	}()
}

// forward pipes c to the server until either side closes or Cut closes both.
func (p *Proxy) forward(c net.Conn, gen int) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.gen != gen { // cut while we dialled
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // a broken pipe is what Cut is for
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
	_ = c.Close()
	_ = up.Close()
	<-done
}
