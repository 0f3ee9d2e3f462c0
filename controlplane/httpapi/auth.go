package httpapi

import (
	"crypto/subtle"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/http/httpguts"

	"github.com/laracopilot/controlplane/controlplane"
)

// Auth is the server's authentication setup.
//
// The operator API requires AdminToken as a bearer token. Tenant routes
// require a key of that tenant (lc_...) or the operator token; an operator
// acting for a tenant is marked in the request log. With no AdminToken
// (allowed only on a loopback listener, see cmd/controlplane) the server is
// in development mode: requests without credentials are let through on both
// APIs, while credentials that are sent are still checked.
type Auth struct {
	AdminToken string
	// Keys resolves tenant API keys in memory (catalog key cache).
	Keys KeyDirectory
	// TrustedProxies are the peers whose X-Forwarded-Host/-For headers are
	// honoured; from anyone else they are ignored.
	TrustedProxies []netip.Prefix
}

// KeyDirectory finds the tenant of an API key, from memory.
type KeyDirectory interface {
	// KeyTenant returns the tenant id and key id of a presented key.
	KeyTenant(key string) (tenantID, keyID int64, ok bool)
	// MarkUsed records a successful use of a key (flushed in batches).
	MarkUsed(keyID int64)
}

const (
	hostKey  = "host"
	actorKey = "actor"
)

// setActor names who acts, for the request log and, on the operator API,
// through the request's context, for the audit trail (tenant routes write
// no audit entries, and skip the cost of a new request).
func setActor(c *gin.Context, who string, audited bool) {
	c.Set(actorKey, who)
	if audited {
		c.Request = c.Request.WithContext(controlplane.WithActor(c.Request.Context(), who))
	}
}

// devMode reports whether the server runs without an operator token.
func (s *Server) devMode() bool { return s.Auth.AdminToken == "" }

// bearer returns the request's bearer token, "" if none.
func bearer(c *gin.Context) string {
	h := c.GetHeader("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// isOperator compares in constant time, so the token cannot be guessed
// byte by byte from response timings.
func (s *Server) isOperator(token string) bool {
	return s.Auth.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.Auth.AdminToken)) == 1
}

func unauthorized(c *gin.Context, realm, msg string) error {
	c.Header("WWW-Authenticate", `Bearer realm="`+realm+`"`)
	return controlplane.Errorf(controlplane.Unauthorized, "%s", msg)
}

// authOperator admits the operator: the token, or no token in dev mode.
func (s *Server) authOperator(c *gin.Context) error {
	token := bearer(c)
	switch {
	case s.isOperator(token):
		setActor(c, "operator", true)
		return nil
	case s.devMode() && token == "":
		setActor(c, "operator (development mode, no ADMIN_TOKEN)", true)
		return nil
	}
	return unauthorized(c, "operator", "the operator API needs Authorization: Bearer <ADMIN_TOKEN>")
}

// authTenant admits a request for tenant t: a key of t, or the operator
// token (an operator acting for the tenant). A key of another tenant is
// refused exactly like a wrong key.
func (s *Server) authTenant(c *gin.Context, t *controlplane.Tenant) error {
	token := bearer(c)
	if s.isOperator(token) {
		setActor(c, "operator", false)
		return nil
	}
	if token != "" && s.Auth.Keys != nil {
		if tenantID, keyID, ok := s.Auth.Keys.KeyTenant(token); ok && tenantID == t.ID {
			s.Auth.Keys.MarkUsed(keyID)
			setActor(c, "key:"+itoa(keyID), false)
			return nil
		}
	}
	if s.devMode() && token == "" {
		setActor(c, "anonymous (development mode, no ADMIN_TOKEN)", false)
		return nil
	}
	return unauthorized(c, t.Domain, "this tenant's API needs Authorization: Bearer <an API key of the tenant>")
}

// requestHost is the host the request was addressed to: the Host header,
// or X-Forwarded-Host when a trusted proxy sent the request.
func (s *Server) requestHost(c *gin.Context) string {
	if h, ok := c.Get(hostKey); ok {
		return h.(string)
	}
	_, host := s.hostHeader(c)
	host = controlplane.NormalizeHost(host)
	c.Set(hostKey, host)
	return host
}

// hostHeader returns where the request's host comes from and its raw value:
// the first value of X-Forwarded-Host from a trusted proxy, else Host (or
// the host of an absolute request URI, which net/http puts there).
func (s *Server) hostHeader(c *gin.Context) (header, host string) {
	if fwd := c.GetHeader("X-Forwarded-Host"); fwd != "" && s.fromTrustedProxy(c) {
		// The first value is what the client asked the first proxy for.
		host, _, _ = strings.Cut(fwd, ",")
		return "X-Forwarded-Host", strings.TrimSpace(host)
	}
	return "Host", c.Request.Host
}

// checkHost refuses a request whose host holds bytes no host name has
// (control characters, bytes ≥ 0x80, spaces, '/', '@', ...) with the JSON
// 400 of every other malformed request. It applies the rule net/http
// applies to the Host header (httpguts.ValidHostHeader) to the hosts
// net/http lets through unchecked: X-Forwarded-Host and the host of an
// absolute request URI ("GET http://h%FF/ HTTP/1.1"). A bad Host header
// itself never gets here: net/http answers it with its own plain-text 400.
func (s *Server) checkHost(c *gin.Context) error {
	header, host := s.hostHeader(c)
	if httpguts.ValidHostHeader(host) {
		return nil
	}
	const reason = "must be a host name such as acme.example.com, optionally with a port"
	return &controlplane.Error{Code: controlplane.BadRequest, Message: fmt.Sprintf("the %s header %q is not a host name", header, host), Fields: map[string]string{header: reason}}
}

func (s *Server) fromTrustedProxy(c *gin.Context) bool {
	addr, err := netip.ParseAddrPort(c.Request.RemoteAddr)
	if err != nil {
		return false
	}
	ip := addr.Addr().Unmap()
	for _, p := range s.Auth.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// actor names who made the request, for logs and the audit trail.
func actor(c *gin.Context) string { return c.GetString(actorKey) }
