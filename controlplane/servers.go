package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ServerStatus is the operator's switch on a tenant server.
type ServerStatus string

// Server statuses. They say where new tenants may go (Placement).
const (
	ServerActive   ServerStatus = "active"   // takes new tenants
	ServerDraining ServerStatus = "draining" // keeps its tenants, takes no new ones
	ServerDisabled ServerStatus = "disabled" // takes no new tenants and its capacity is not counted
)

// DefaultServer is the server of TENANT_DATABASE_URL, registered at every
// start: every tenant made before the registry existed is on it, and a
// one-server install needs nothing else.
const DefaultServer = "default"

// MaxServerCapacity bounds a server's capacity (tenants); it is also the
// default server's until an operator sets a real one.
const MaxServerCapacity = 1_000_000

// Server is a registered tenant server as operators see it. URL never
// holds a password: a password the server was registered with is sealed
// in the catalog (HasPassword), or the URL leaves it to a pgpass file.
type Server struct {
	Name        string       `json:"name"`
	URL         string       `json:"url"`
	HasPassword bool         `json:"has_password"`
	Capacity    int          `json:"capacity"`
	Status      ServerStatus `json:"status"`
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	ServerLoad
}

// ServerLoad is what the catalog says lives on a server.
type ServerLoad struct {
	// Tenants counts the server's tenants by provisioning state (every
	// state present, 0 included).
	Tenants         map[ProvisionState]int `json:"tenants"`
	SchemaTenants   int                    `json:"schema_tenants"`
	DatabaseTenants int                    `json:"database_tenants"`
	// Spares counts the spare databases made there (docs/OPERATIONS.md).
	Spares int `json:"spares"`
}

// NewServerLoad returns a load with every provisioning state at 0.
func NewServerLoad() ServerLoad {
	return ServerLoad{Tenants: map[ProvisionState]int{
		ProvisionPending: 0, ProvisionReady: 0, ProvisionFailed: 0, ProvisionDeleting: 0,
	}}
}

// ServerSpec is what an operator registers a server with (POST). URL may
// carry a password; it is taken out before anything is stored.
type ServerSpec struct {
	Name     string       `json:"name" validate:"required,max=63,slug"`
	URL      string       `json:"url"`
	Capacity *int         `json:"capacity" validate:"required,min=1,max=1000000"`
	Status   ServerStatus `json:"status" validate:"oneof=active draining disabled"`
}

// ServerPatch changes a server (PATCH): nil fields are left as they are.
type ServerPatch struct {
	Status   *ServerStatus `json:"status"`
	Capacity *int          `json:"capacity"`
}

func (p ServerPatch) validate() error {
	fields := FieldErrors{}
	if p.Status != nil {
		switch *p.Status {
		case ServerActive, ServerDraining, ServerDisabled:
		default:
			fields.Add("status", "must be one of: active, draining, disabled")
		}
	}
	if p.Capacity != nil && (*p.Capacity < 1 || *p.Capacity > MaxServerCapacity) {
		fields.Add("capacity", fmt.Sprintf("must be from 1 to %d", MaxServerCapacity))
	}
	return fields.Err()
}

// ServerStore keeps the server registry (the catalog). Its writes record
// their audit entries in their own transaction, with the URL as stored
// (never a password) and has_password.
type ServerStore interface {
	// CreateServer inserts s with its sealed password (nil for none); a
	// taken name is a Conflict naming "name". s is filled from the row.
	CreateServer(ctx context.Context, s *Server, passwordEnc []byte) error
	Server(ctx context.Context, name string) (*Server, error)
	// Servers lists every server by name, with its load.
	Servers(ctx context.Context) ([]Server, error)
	// UpdateServer runs fn on the current row, locked against concurrent
	// writers, and stores its status and capacity.
	UpdateServer(ctx context.Context, name string, fn func(*Server) error) (*Server, error)
	// DeleteServer removes a server nothing lives on: a Conflict while a
	// tenant or a spare database references it.
	DeleteServer(ctx context.Context, name string) error
	// ServerCredentials returns the stored URL and sealed password.
	ServerCredentials(ctx context.Context, name string) (url string, passwordEnc []byte, err error)
	// RegisterServer makes sure server name exists (inserted with capacity
	// and an empty URL if not), then, under its row lock, calls decide with
	// the stored URL and sealed password; when decide says so, its URL and
	// sealed password are stored. It returns the URL before.
	RegisterServer(ctx context.Context, name string, capacity int,
		decide func(url string, passwordEnc []byte) (newURL string, newEnc []byte, write bool, err error)) (before string, changed bool, err error)
}

// Servers is the registry of tenant servers: register, list, change,
// remove, and the connection string of each for the control plane's own
// use. The HTTP handlers and the CLI both go through it.
type Servers struct {
	Store ServerStore
	// Key seals and opens the passwords kept in the catalog
	// (SERVER_SECRET_KEY); nil: a URL with a password is refused.
	Key []byte
	// DefaultURL is TENANT_DATABASE_URL: the default server's connection
	// string, credentials included. The environment stays its source.
	DefaultURL string
	Log        *slog.Logger
}

// Create registers a server. The URL's password, if any, is sealed with
// Key and the URL stored without it; without Key such a URL is refused,
// naming url, since the catalog would otherwise keep a password in clear.
func (s *Servers) Create(ctx context.Context, spec ServerSpec) (*Server, error) {
	if spec.Status == "" {
		spec.Status = ServerActive
	}
	fields := FieldErrors{}
	var de *Error
	if err := ValidateStruct(&spec); errors.As(err, &de) {
		for k, v := range de.Fields {
			fields.Add(k, v)
		}
	} else if err != nil {
		return nil, err
	}
	u, err := ParseServerURL(spec.URL)
	if errors.As(err, &de) {
		for k, v := range de.Fields {
			fields.Add(k, v)
		}
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	var sealed []byte
	if u.Password != "" {
		if len(s.Key) == 0 {
			reason := "carries a password, but SERVER_SECRET_KEY is not set, so the catalog cannot keep it encrypted: leave the password out and put it in the control plane's pgpass file (PGPASSFILE), or set SERVER_SECRET_KEY"
			return nil, &Error{Code: BadRequest, Message: "url " + reason, Fields: map[string]string{"url": reason}}
		}
		if sealed, err = SealPassword(s.Key, spec.Name, u.Password); err != nil {
			return nil, err
		}
	}
	srv := &Server{Name: spec.Name, URL: u.Redacted, HasPassword: sealed != nil, Capacity: *spec.Capacity, Status: spec.Status}
	if err := s.Store.CreateServer(ctx, srv, sealed); err != nil {
		return nil, err
	}
	return srv, nil
}

// Get returns one server with its load.
func (s *Servers) Get(ctx context.Context, name string) (*Server, error) {
	return s.Store.Server(ctx, name)
}

// List returns every server by name, with its load.
func (s *Servers) List(ctx context.Context) ([]Server, error) {
	return s.Store.Servers(ctx)
}

// Patch changes a server's status or capacity.
func (s *Servers) Patch(ctx context.Context, name string, p ServerPatch) (*Server, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return s.Store.UpdateServer(ctx, name, func(srv *Server) error {
		if p.Status != nil {
			srv.Status = *p.Status
		}
		if p.Capacity != nil {
			srv.Capacity = *p.Capacity
		}
		return nil
	})
}

// Delete removes a server from the registry; nothing on the server itself
// is touched. A server with tenants or spare databases is a Conflict, and
// so is the default server: new tenants are created there, and every
// start registers it again.
func (s *Servers) Delete(ctx context.Context, name string) error {
	if name == DefaultServer {
		if _, err := s.Store.Server(ctx, name); err != nil {
			return err
		}
		return Errorf(Conflict, "server %s is the server of TENANT_DATABASE_URL, where new tenants are created; it cannot be removed", name)
	}
	return s.Store.DeleteServer(ctx, name)
}

// ConnURL returns server name's connection string with its password, for
// the control plane's own connections (provisioning, routing). It must
// never reach a response, a log line or an error message. The default
// server's is TENANT_DATABASE_URL itself: its credentials come from the
// environment, so that an install of one server needs no key.
func (s *Servers) ConnURL(ctx context.Context, name string) (string, error) {
	if name == DefaultServer && s.DefaultURL != "" {
		return s.DefaultURL, nil
	}
	stored, sealed, err := s.Store.ServerCredentials(ctx, name)
	if err != nil {
		return "", err
	}
	if stored == "" {
		return "", Errorf(Unavailable, "server %s has no URL yet: it is recorded at the next start", name)
	}
	u := ServerURL{Redacted: stored}
	if sealed != nil {
		if len(s.Key) == 0 {
			return "", &Error{Code: Internal, Message: "internal error", Err: fmt.Errorf("server %s: its password is sealed in the catalog but SERVER_SECRET_KEY is not set", name)}
		}
		if u.Password, err = OpenPassword(s.Key, name, sealed); err != nil {
			return "", &Error{Code: Internal, Message: "internal error", Err: err}
		}
	}
	return u.WithPassword()
}

// RegisterDefault records TENANT_DATABASE_URL as the default server's URL
// (without its password) at every start: idempotent, and a change (another
// host, say) is written, audited and logged once, redacted. With Key its
// password is sealed in the catalog too; without, the catalog keeps none
// and the password stays in the environment (ConnURL reads it there).
func (s *Servers) RegisterDefault(ctx context.Context) error {
	u, err := RedactServerURL(s.DefaultURL)
	if err != nil {
		return fmt.Errorf("register the default server: TENANT_DATABASE_URL: %w", err)
	}
	seal := u.Password != "" && len(s.Key) > 0
	before, changed, err := s.Store.RegisterServer(ctx, DefaultServer, MaxServerCapacity, func(url string, enc []byte) (string, []byte, bool, error) {
		if url == u.Redacted {
			switch {
			case !seal && enc == nil:
				return "", nil, false, nil
			case seal && enc != nil:
				// Sealing again would write a new nonce at every start:
				// keep the stored one while it opens to the same password.
				if pw, err := OpenPassword(s.Key, DefaultServer, enc); err == nil && pw == u.Password {
					return "", nil, false, nil
				}
			}
		}
		if !seal {
			// No key (or no password): the catalog keeps no password it
			// could not keep current.
			return u.Redacted, nil, true, nil
		}
		sealed, err := SealPassword(s.Key, DefaultServer, u.Password)
		return u.Redacted, sealed, true, err
	})
	if err != nil || !changed {
		return err
	}
	password := "none"
	switch {
	case seal:
		password = "sealed in the catalog (SERVER_SECRET_KEY)"
	case u.Password != "":
		password = "kept in TENANT_DATABASE_URL only (no SERVER_SECRET_KEY)"
	}
	if before == "" {
		s.Log.Info("tenant server default registered from TENANT_DATABASE_URL", "server", DefaultServer, "url", u.Redacted, "password", password)
	} else {
		s.Log.Info("tenant server default updated from TENANT_DATABASE_URL", "server", DefaultServer, "url_before", before, "url", u.Redacted, "password", password)
	}
	return nil
}

// ServerDiff lists the operator-visible fields that differ between before
// and after (either may be nil, for a create or a delete). It holds no
// secret: the URL is the stored one, without password.
func ServerDiff(before, after *Server) map[string]Change {
	fields := func(s *Server) map[string]any {
		if s == nil {
			return map[string]any{}
		}
		return map[string]any{"url": s.URL, "has_password": s.HasPassword, "capacity": s.Capacity, "status": s.Status}
	}
	b, a := fields(before), fields(after)
	out := map[string]Change{}
	for k, av := range a {
		if bv, ok := b[k]; !ok || !equalJSON(bv, av) {
			out[k] = Change{Before: b[k], After: av}
		}
	}
	for k, bv := range b {
		if _, ok := a[k]; !ok {
			out[k] = Change{Before: bv, After: nil}
		}
	}
	return out
}
