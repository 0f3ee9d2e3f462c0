package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/httpapi"
)

// pageData is what every page's template gets: the layout's parts and the
// page's own View.
type pageData struct {
	Title    string
	Nav      string // the navigation entry to mark current
	Dev      bool   // development mode: the banner
	Actor    string
	CSRF     string
	LoggedIn bool
	Build    controlplane.Build
	View     any
}

func (c *Console) page(s *session, title, nav string, view any) pageData {
	p := pageData{Title: title, Nav: nav, Dev: c.devMode(), Build: c.Build, View: view}
	if s != nil {
		p.LoggedIn, p.Actor, p.CSRF = true, s.actor, s.csrf
	}
	return p
}

var funcs = template.FuncMap{
	"prefix": func() string { return Prefix },
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return fmt.Sprint(t)
	},
	// pretty shows JSON (settings, an audit entry's diff) indented.
	"pretty": func(v any) string {
		var raw []byte
		switch x := v.(type) {
		case json.RawMessage:
			raw = x
		default:
			raw, _ = json.Marshal(x)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			return string(raw)
		}
		return out.String()
	},
	// changes shows an audit entry's diff one field a line, "field:
	// before → after", values as JSON.
	"changes": func(diff map[string]controlplane.Change) []string {
		keys := make([]string, 0, len(diff))
		for k := range diff {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			before, _ := json.Marshal(diff[k].Before)
			after, _ := json.Marshal(diff[k].After)
			out = append(out, fmt.Sprintf("%s: %s → %s", k, before, after))
		}
		return out
	},
	// progress lists an operation's counters, sorted by name.
	"progress": func(m map[string]any) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %v", k, m[k]))
		}
		return strings.Join(parts, ", ")
	},
	"add": func(a, b int) int { return a + b },
	// part is pct percent of n: a meter's "high" mark.
	"part": func(n, pct int) int { return n * pct / 100 },
	"percent": func(n, of int) int {
		if of <= 0 {
			return 0
		}
		return min(100, n*100/of)
	},
}

// pages are parsed once, each with the layout; a template that does not
// parse stops the binary at start (and every test), not a request.
var pages = func() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"login", "overview", "tenants", "tenant", "operations", "migrations", "error"} {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/operations_rows.html", "templates/"+name+".html"))
	}
	out["operations_rows"] = template.Must(template.New("rows").Funcs(funcs).ParseFS(templateFiles, "templates/operations_rows.html"))
	return out
}()

// render writes a page. It renders into a buffer first, so a template
// error becomes a clean 500 page rather than half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	entry := "layout"
	if name == "operations_rows" {
		entry = "operations_rows"
	}
	if err := pages[name].ExecuteTemplate(&buf, entry, data); err != nil {
		c.Log.Error("console: rendering a page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page; the details are in the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Message string
	Fields  map[string]string
	Back    string
}

// fail answers with the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string, fields map[string]string) {
	// Back to the console page the operator came from, never elsewhere.
	back := Prefix + "/"
	if u, err := url.Parse(r.Referer()); err == nil && strings.EqualFold(u.Host, r.Host) && strings.HasPrefix(u.Path, Prefix+"/") && u.Path != Prefix+"/login" {
		back = u.RequestURI()
	}
	c.render(w, status, "error", c.page(s, http.StatusText(status), "", errorView{Status: status, Message: msg, Fields: fields, Back: back}))
}

// failErr answers with the error page for a service's error, with the
// status and message the API would give it (httpapi.PublicError), and the
// fields it names.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, s *session, err error) {
	de, status, msg := httpapi.PublicError(err)
	if status >= 500 {
		c.Log.Error("console: request failed", "path", r.URL.Path, "status", status, "err", err)
	}
	c.fail(w, r, s, status, msg, de.Fields)
}

func statusOf(err error) int {
	_, status, _ := httpapi.PublicError(err)
	return status
}

func publicMessage(err error) string {
	_, _, msg := httpapi.PublicError(err)
	return msg
}
