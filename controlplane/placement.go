package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Placement chooses the tenant server of a new tenant: the one an operator
// names, or, among the servers that may take one (active, answering, below
// their capacity), the least loaded by tenants ÷ capacity, ties broken by
// name so that the same state always gives the same choice. It never falls
// back: a named server that cannot take the tenant is an error saying why,
// and with no server left the create fails with NoCapacity, naming each
// server's state. The catalog checks the choice again under the server's
// row lock as it inserts the tenant (CreateOptions.Server).
type Placement struct {
	// Servers lists the registered servers with their tenants counted
	// (catalog.Store.ServerStates).
	Servers func(ctx context.Context) ([]Server, error)
	// Health returns a server's last health check: the error it failed
	// with, nil if it answered. nil: every server is taken as healthy.
	Health func(name string) error
}

// Choose returns the server for a new tenant; requested is the one the
// operator named ("" for any).
func (p *Placement) Choose(ctx context.Context, requested string) (string, error) {
	if p == nil {
		return cmp.Or(requested, DefaultServer), nil
	}
	servers, err := p.Servers(ctx)
	if err != nil {
		return "", err
	}
	if requested != "" {
		i := slices.IndexFunc(servers, func(s Server) bool { return s.Name == requested })
		if i < 0 {
			return "", FieldError("server", "no tenant server is named "+requested)
		}
		if why := p.refusal(&servers[i]); why != nil {
			return "", why
		}
		return requested, nil
	}
	var best *Server
	var states []string
	for i := range servers {
		s := &servers[i]
		if why := p.refusal(s); why != nil {
			states = append(states, s.Name+": "+why.Message)
			continue
		}
		if best == nil || s.load() < best.load() || s.load() == best.load() && s.Name < best.Name {
			best = s
		}
	}
	if best == nil {
		if len(states) == 0 {
			states = append(states, "none is registered")
		}
		return "", Errorf(NoCapacity, "no tenant server can take a new tenant (%s)", strings.Join(states, "; "))
	}
	return best.Name, nil
}

// refusal says why s cannot take a new tenant now, or nil.
func (p *Placement) refusal(s *Server) *Error {
	switch {
	case s.Status != ServerActive:
		return Errorf(Conflict, "tenant server %s is %s: it takes no new tenants", s.Name, s.Status)
	case s.tenants() >= s.Capacity:
		return Errorf(NoCapacity, "tenant server %s is full: %d tenants, its capacity %d", s.Name, s.tenants(), s.Capacity)
	}
	if p.Health != nil {
		if err := p.Health(s.Name); err != nil {
			return &Error{Code: Unavailable, Message: fmt.Sprintf("tenant server %s is not answering; try again later or name another server", s.Name), Err: err}
		}
	}
	return nil
}

// tenants counts the server's tenants in every provisioning state: a
// pending or deleting tenant holds its place until it is gone.
func (s *Server) tenants() int {
	n := 0
	for _, c := range s.Tenants {
		n += c
	}
	return n
}

func (s *Server) load() float64 { return float64(s.tenants()) / float64(max(s.Capacity, 1)) }
