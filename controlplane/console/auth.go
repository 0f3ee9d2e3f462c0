package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/httpapi"
)

// CookieName is the session cookie. It cannot carry the __Host- prefix,
// which demands Path=/: the cookie is scoped to Prefix, so the operator
// API and the tenants' routes on the same host never receive it.
const CookieName = "console_session"

// CSRFField is the hidden form field every POST form carries.
const CSRFField = "csrf"

// Actors, as the audit trail records the console's actions: the operator,
// marked as acting through the console (the API's actor is "operator").
const (
	ActorOperator    = "operator (console)"
	ActorDevelopment = "operator (console, development mode, no ADMIN_TOKEN)"
)

// session is a request's authenticated login.
type session struct {
	id    string // the cookie's value: never logged, never stored
	actor string
	csrf  string
}

// newSessionID is 256 random bits, base64url: unguessable, and safe in a
// cookie as is.
func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// idHash is what the catalog keeps of a session id.
func idHash(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// tokenMAC binds a session to the ADMIN_TOKEN it was made under: with
// another token (rotated, or set where there was none) the MAC differs
// and the session is refused. Keyed with the token, over the id, so the
// catalog holds no plain hash of the token to guess at.
func tokenMAC(token, id string) [32]byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("laracopilot console session\x00"))
	m.Write([]byte(id))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// csrfToken is the session's CSRF token: derived from the session id, so
// it needs no storage, differs per session and cannot be computed by
// anyone who does not hold the cookie (which a cross-site page never
// reads). Forms carry it in CSRFField.
func csrfToken(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("laracopilot console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionHandler is a handler that runs only with a valid session.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// session admits requests with a valid session cookie. Without one, a
// page request is sent to the login form (an htmx poll is told to go there
// with HX-Redirect), anything else gets 401. Every POST must also pass the
// CSRF check (403), and runs with the session's actor in its context, so
// the services audit it as the operator's action through the console.
func (c *Console) session(next sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, reason, err := c.readSession(r)
		if err != nil {
			c.fail(w, r, nil, statusOf(err), "The console cannot check your session now: "+publicMessage(err), nil)
			return
		}
		if s == nil {
			if reason != "" {
				clearCookie(w)
			}
			c.toLogin(w, r, reason)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodPost {
			if msg := checkCSRF(r, s); msg != "" {
				c.Log.Warn("console: request refused by the CSRF check", "path", r.URL.Path, "reason", msg)
				c.fail(w, r, s, http.StatusForbidden, "Refused: "+msg+". Reload the page and try again.", nil)
				return
			}
			// The API refuses such text in bodies and queries (httpapi's
			// checkParams covers the console's queries); form fields get
			// the same rule before anything reaches a service.
			fields := controlplane.FieldErrors{}
			for name, values := range r.PostForm {
				for _, v := range values {
					if reason := controlplane.TextProblem(v); reason != "" {
						fields.Add(name, reason)
					}
				}
			}
			if err := fields.Err(); err != nil {
				c.failErr(w, r, s, err)
				return
			}
			r = r.WithContext(controlplane.WithActor(r.Context(), s.actor))
		}
		next(w, r, s)
	})
}

// readSession returns the request's valid session; nil with a reason for
// the login page when there is none (the reason is "" when no cookie was
// sent at all); an error when the catalog could not be asked.
func (c *Console) readSession(r *http.Request) (*session, string, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return nil, "", nil
	}
	id := ck.Value
	stored, err := c.Sessions.ConsoleSession(r.Context(), idHash(id))
	var de *controlplane.Error
	switch {
	case errors.As(err, &de) && de.Code == controlplane.NotFound:
		return nil, "Your session has ended (expired or logged out). Log in again.", nil
	case err != nil:
		return nil, "", err
	}
	want := tokenMAC(c.AdminToken, id)
	if subtle.ConstantTimeCompare(stored.TokenMAC[:], want[:]) != 1 {
		// Made under another ADMIN_TOKEN: dead for good, so gone from the
		// catalog too.
		if err := c.Sessions.DeleteConsoleSession(r.Context(), stored.IDHash); err != nil {
			c.Log.Warn("console: deleting a session of another ADMIN_TOKEN", "err", err)
		}
		return nil, "The operator token (ADMIN_TOKEN) has changed since you logged in. Log in again.", nil
	}
	return &session{id: id, actor: stored.Actor, csrf: csrfToken(id)}, "", nil
}

// toLogin sends a request without a session to the login form.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, reason string) {
	target := Prefix + "/login"
	if reason != "" {
		target += "?ended=1"
	}
	switch {
	case r.Header.Get("HX-Request") == "true":
		// htmx follows this header instead of swapping a login form into
		// a table.
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusUnauthorized)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		http.Redirect(w, r, target, http.StatusSeeOther)
	default:
		c.render(w, http.StatusUnauthorized, "login", c.loginView(r, nil, "You are not logged in (or your session has ended). Log in, then try again."))
	}
}

// checkCSRF says why a POST is refused, or "". Two independent checks:
// the form's token must be the session's (constant-time), and the
// request's Origin (or, from a browser that sends none, its Referer) must
// be this host. Either alone stops a cross-site form; both are cheap.
func checkCSRF(r *http.Request, s *session) string {
	if msg := checkOrigin(r); msg != "" {
		return msg
	}
	got := r.PostFormValue(CSRFField)
	if got == "" {
		return "the form carries no CSRF token"
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		return "the form's CSRF token is not this session's"
	}
	return ""
}

// checkOrigin says why a POST did not come from a page of this host, or
// "". A browser sends Origin with every POST; without it, the Referer
// (same-origin by the console's Referrer-Policy) must name this host; a
// request with neither is refused. The host compared is the one the
// request was addressed to as httpapi's router decided it
// (httpapi.RequestHost: the Host header, or X-Forwarded-Host from a
// trusted proxy only; a cross-site page can set neither). The scheme is
// not compared: behind a TLS-terminating proxy the console sees http.
func checkOrigin(r *http.Request) string {
	source := r.Header.Get("Origin")
	what := "Origin"
	if source == "" || source == "null" {
		source, what = r.Header.Get("Referer"), "Referer"
	}
	if source == "" {
		return "the request has neither an Origin nor a Referer header"
	}
	u, err := url.Parse(source)
	if err != nil || u.Host == "" {
		return "the " + what + " header is not a URL"
	}
	if strings.EqualFold(u.Host, httpapi.RequestHost(r)) {
		return ""
	}
	return "the request comes from another site (" + what + " " + u.Host + ")"
}

// setCookie sets the session cookie: Secure (browsers send it over HTTPS
// only, and over http only to localhost and 127.0.0.1, which they treat
// as trustworthy), HttpOnly (no script reads it), SameSite=Strict (no
// other site's page or link sends it) and Path=/console.
func setCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: Prefix, Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// loginView is the login page's data.
type loginView struct {
	Token  bool // the form asks for the token (not in development mode)
	Notice string
	Error  string
}

func (c *Console) loginView(r *http.Request, _ *session, errMsg string) pageData {
	v := loginView{Token: !c.devMode(), Error: errMsg}
	switch {
	case r.URL.Query().Has("ended"):
		v.Notice = "Your session has ended. Log in again."
	case r.URL.Query().Has("out"):
		v.Notice = "You are logged out."
	}
	return c.page(nil, "Log in", "", v)
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s, _, err := c.readSession(r); err == nil && s != nil {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, http.StatusOK, "login", c.loginView(r, nil, ""))
}

// login checks the operator token and starts a session. The login form is
// protected by the Origin check (it has no session to take a CSRF token
// from); a wrong token waits FailDelay, one failure at a time, then gets
// 401. Neither the token nor the session id is ever logged.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if msg := checkOrigin(r); msg != "" {
		c.Log.Warn("console: login refused by the origin check", "reason", msg)
		c.render(w, http.StatusForbidden, "login", c.loginView(r, nil, "Refused: "+msg+"."))
		return
	}
	token := r.PostFormValue("token")
	actor, failure := ActorOperator, ""
	switch {
	case c.devMode() && token == "":
		actor = ActorDevelopment
	case c.devMode():
		failure = "This server has no ADMIN_TOKEN (development mode): leave the token empty."
	case token == "":
		failure = "Enter the operator token (ADMIN_TOKEN)."
	case subtle.ConstantTimeCompare([]byte(token), []byte(c.AdminToken)) != 1:
		failure = "That is not the operator token (ADMIN_TOKEN)."
	}
	if failure != "" {
		c.Log.Warn("console: login failed", "remote", r.RemoteAddr)
		c.slowDown(r.Context())
		c.render(w, http.StatusUnauthorized, "login", c.loginView(r, nil, failure))
		return
	}
	id := newSessionID()
	expires := time.Now().Add(c.ttl())
	err := c.Sessions.CreateConsoleSession(r.Context(), controlplane.ConsoleSession{
		IDHash: idHash(id), TokenMAC: tokenMAC(c.AdminToken, id), Actor: actor, ExpiresAt: expires,
	})
	if err != nil {
		c.Log.Error("console: storing a session", "err", err)
		c.render(w, statusOf(err), "login", c.loginView(r, nil, "The session could not be stored: "+publicMessage(err)))
		return
	}
	c.Log.Info("console: login", "actor", actor, "remote", r.RemoteAddr)
	setCookie(w, id, expires)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// slowDown holds a failed login for FailDelay, one at a time per replica:
// guessing a token through the form runs at one try per FailDelay at
// best, whatever the number of connections.
func (c *Console) slowDown(ctx context.Context) {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	t := time.NewTimer(c.failDelay())
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// logout ends the session in the catalog, for every replica at once, and
// clears the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.Sessions.DeleteConsoleSession(r.Context(), idHash(s.id)); err != nil {
		c.fail(w, r, s, statusOf(err), "Logging out failed: "+publicMessage(err), nil)
		return
	}
	c.Log.Info("console: logout", "actor", s.actor)
	clearCookie(w)
	http.Redirect(w, r, Prefix+"/login?out=1", http.StatusSeeOther)
}
