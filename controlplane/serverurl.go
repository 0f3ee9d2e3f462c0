package controlplane

import (
	"errors"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// ServerURL is a tenant server's connection string taken apart: what the
// catalog stores and shows (Redacted: the URL without its password) and
// the password, which only the control plane's own connections see.
type ServerURL struct {
	Redacted string
	Password string
}

// serverURLParams are the query parameters a registered server's URL may
// carry: libpq's connection keywords that pgx reads and that hold no
// secret. Anything else is refused rather than stored: a typo would
// otherwise become a server-side setting sent at every connection (pgx
// passes unknown parameters on as run-time parameters), and sslpassword is
// a secret that belongs in the key file's protection, not in a URL.
var serverURLParams = map[string]func(string) string{
	"host":        func(v string) string { return checkHosts(strings.Split(v, ","), true) },
	"port":        checkPorts,
	"dbname":      func(v string) string { return checkDBName(v) },
	"user":        func(string) string { return "" },
	"sslmode":     oneOf("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
	"sslrootcert": func(string) string { return "" },
	"sslcert":     func(string) string { return "" },
	"sslkey":      func(string) string { return "" },
	"sslsni":      oneOf("0", "1"),
	"connect_timeout": func(v string) string {
		if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 3600 {
			return "must be a number of seconds from 0 to 3600"
		}
		return ""
	},
	"application_name":     func(string) string { return "" },
	"target_session_attrs": oneOf("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
}

// secretParams are the query parameters that carry a secret: never stored,
// whatever the URL came from.
var secretParams = []string{"password", "sslpassword"}

// ParseServerURL checks the URL an operator registers a server with and
// takes its password out. The URL must be postgres:// or postgresql://
// with a host, at most a database name as its path, and only the query
// parameters of serverURLParams (password too, taken out like the user
// info's). Every problem is an Invalid error naming "url"; no message
// echoes the URL, which may hold a password.
func ParseServerURL(raw string) (ServerURL, error) {
	bad := func(reason string) (ServerURL, error) { return ServerURL{}, FieldError("url", reason) }
	if raw == "" {
		return bad("is required")
	}
	if p := TextProblem(raw); p != "" {
		return bad(p)
	}
	if len(raw) > 2048 {
		return bad("must be at most 2048 characters")
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || (!strings.EqualFold(scheme, "postgres") && !strings.EqualFold(scheme, "postgresql")) {
		return bad("must be a postgres:// or postgresql:// URL (the key=value form is not accepted here)")
	}
	if strings.IndexFunc(raw, unicode.IsSpace) >= 0 {
		return bad("must not contain spaces (percent-encode them)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL: never pass it on.
		return bad("is not a valid URL (check the port and percent-encode special characters in the user and password)")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("must not have a #fragment")
	}
	if u.Path != "" && u.Path != "/" && (strings.Count(u.Path, "/") != 1) {
		return bad("may have at most a database name as its path (/postgres)")
	}
	if r := checkDBName(strings.TrimPrefix(u.Path, "/")); r != "" {
		return bad("database name " + r)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("has a malformed query string")
	}
	var password string
	if p, ok := u.User.Password(); ok {
		password = p
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := q[k]
		if len(vs) != 1 {
			return bad("has the parameter " + k + " more than once")
		}
		if k == "password" {
			if password != "" {
				return bad("has a password twice (in the user info and as a parameter)")
			}
			password = vs[0]
			continue
		}
		check, known := serverURLParams[k]
		if !known {
			return bad("has an unknown parameter " + strconv.Quote(k) + "; allowed: " + strings.Join(paramNames(), ", "))
		}
		if r := check(vs[0]); r != "" {
			return bad("parameter " + k + " " + r)
		}
	}
	if u.Host == "" && q.Get("host") == "" {
		return bad("must name a host (postgres://user@host:5432/postgres)")
	}
	if u.Host != "" {
		if r := checkHosts(strings.Split(u.Host, ","), false); r != "" {
			return bad(r)
		}
	}
	if password != "" && u.User.Username() == "" && q.Get("user") == "" {
		return bad("has a password but no user")
	}
	return ServerURL{Redacted: redact(u, q), Password: password}, nil
}

// RedactServerURL takes the password out of a connection string the
// control plane was given in its environment (TENANT_DATABASE_URL, already
// accepted by config): a URL, or libpq's key=value form, which is turned
// into a URL. Unlike ParseServerURL it refuses no parameter: the operator
// chose them for the control plane's own connections. The secrets among
// them (password, sslpassword) are taken out.
func RedactServerURL(conn string) (ServerURL, error) {
	if !strings.Contains(conn, "://") {
		var err error
		if conn, err = keywordsToURL(conn); err != nil {
			return ServerURL{}, err
		}
	}
	u, err := url.Parse(conn)
	if err != nil {
		return ServerURL{}, errors.New("the connection string is not a valid URL")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return ServerURL{}, errors.New("the connection string has a malformed query string")
	}
	var out ServerURL
	if p, ok := u.User.Password(); ok {
		out.Password = p
	} else if p := q.Get("password"); p != "" {
		out.Password = p
	}
	out.Redacted = redact(u, q)
	return out, nil
}

// WithPassword returns the redacted URL with password put back, for the
// control plane's own connections; never for a response, a log line or an
// error.
func (s ServerURL) WithPassword() (string, error) {
	u, err := url.Parse(s.Redacted)
	if err != nil {
		return "", errors.New("the stored server URL is not a valid URL")
	}
	if s.Password != "" {
		user := ""
		if u.User != nil {
			user = u.User.Username()
		}
		q := u.Query()
		if user == "" {
			// The user came as a parameter: the password joins it there.
			q.Set("password", s.Password)
			u.RawQuery = q.Encode()
		} else {
			u.User = url.UserPassword(user, s.Password)
		}
	}
	return u.String(), nil
}

// redact is u without any secret: the user info keeps its user only, and
// the secret query parameters go. Parameters come out sorted (url.Values),
// so the same URL always reads the same.
func redact(u *url.URL, q url.Values) string {
	c := *u
	c.Scheme = strings.ToLower(c.Scheme)
	if c.User != nil {
		if name := c.User.Username(); name != "" {
			c.User = url.User(name)
		} else {
			c.User = nil
		}
	}
	for _, k := range secretParams {
		q.Del(k)
	}
	c.RawQuery = q.Encode()
	c.ForceQuery = false
	return c.String()
}

// keywordsToURL turns libpq's key=value connection string into a URL with
// the same settings: host, port, user, password and dbname in their places
// (several hosts, or a socket directory, as the host parameter), every
// other keyword as a query parameter, as libpq and pgx read URLs.
func keywordsToURL(s string) (string, error) {
	kv, err := parseKeywords(s)
	if err != nil {
		return "", err
	}
	u := &url.URL{Scheme: "postgres"}
	host, port := kv["host"], kv["port"]
	delete(kv, "host")
	delete(kv, "port")
	if host != "" && !strings.ContainsAny(host, ",/") && !strings.ContainsAny(port, ",") {
		u.Host = host
		if strings.Contains(host, ":") { // IPv6
			u.Host = "[" + host + "]"
		}
		if port != "" {
			u.Host += ":" + port
		}
	} else {
		if host != "" {
			kv["host"] = host
		}
		if port != "" {
			kv["port"] = port
		}
	}
	if user := kv["user"]; user != "" {
		if pw, ok := kv["password"]; ok {
			u.User = url.UserPassword(user, pw)
			delete(kv, "password")
		} else {
			u.User = url.User(user)
		}
		delete(kv, "user")
	}
	if db, ok := kv["dbname"]; ok {
		u.Path = "/" + db
		delete(kv, "dbname")
	}
	q := url.Values{}
	for k, v := range kv {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// parseKeywords reads libpq's key=value form: pairs separated by spaces,
// spaces allowed around "=", a value in single quotes with \' and \\
// escapes, or bare up to the next space (backslash escapes there too).
func parseKeywords(s string) (map[string]string, error) {
	out := map[string]string{}
	r := []rune(s)
	i := 0
	skip := func() {
		for i < len(r) && unicode.IsSpace(r[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(r) {
			return out, nil
		}
		start := i
		for i < len(r) && r[i] != '=' && !unicode.IsSpace(r[i]) {
			i++
		}
		key := string(r[start:i])
		skip()
		if i == len(r) || r[i] != '=' || key == "" {
			return nil, errors.New("the connection string is neither a URL nor key=value pairs")
		}
		i++
		skip()
		var val strings.Builder
		if i < len(r) && r[i] == '\'' {
			i++
			for ; i < len(r) && r[i] != '\''; i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
				}
				val.WriteRune(r[i])
			}
			if i == len(r) {
				return nil, errors.New("the connection string has an unterminated quoted value")
			}
			i++
		} else {
			for ; i < len(r) && !unicode.IsSpace(r[i]); i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
				}
				val.WriteRune(r[i])
			}
		}
		out[key] = val.String()
	}
}

// checkHosts checks host[:port] entries (inURL) or bare hosts (a host
// parameter, where a socket directory is allowed too).
func checkHosts(hosts []string, param bool) string {
	for _, h := range hosts {
		if param && strings.HasPrefix(h, "/") {
			continue // a Unix socket directory
		}
		host, port := h, ""
		if !param {
			if hh, p, err := net.SplitHostPort(h); err == nil {
				host, port = hh, p
			}
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		}
		if host == "" {
			return "must name a host (postgres://user@host:5432/postgres)"
		}
		if net.ParseIP(host) == nil && !validHostChars(host) {
			return "host must be a host name or an IP address"
		}
		if port != "" {
			if r := checkPorts(port); r != "" {
				return r
			}
		}
	}
	return ""
}

func validHostChars(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func checkPorts(v string) string {
	for _, p := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "port must be from 1 to 65535"
		}
	}
	return ""
}

func checkDBName(name string) string {
	if p, err := url.PathUnescape(name); err == nil {
		name = p
	}
	if len(name) > 63 {
		return "must be at most 63 bytes"
	}
	return ""
}

func oneOf(values ...string) func(string) string {
	return func(v string) string {
		for _, ok := range values {
			if v == ok {
				return ""
			}
		}
		return "must be one of: " + strings.Join(values, ", ")
	}
}

func paramNames() []string {
	names := make([]string, 0, len(serverURLParams)+1)
	for k := range serverURLParams {
		names = append(names, k)
	}
	names = append(names, "password")
	sort.Strings(names)
	return names
}
