package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// maxTextErrors bounds how many fields one answer names: a body full of
// NULs gets a readable answer, not a map of thousands of entries.
const maxTextErrors = 20

// checkText refuses a JSON body that holds a string PostgreSQL cannot store
// or that encoding/json would silently alter: a \u0000 escape (NUL), bytes
// that are not UTF-8, or an escaped UTF-16 surrogate without its pair. It
// is the one text check of every JSON body (decodeBytes, decodeBatchFast):
// run it on a body the decoder accepted.
//
// Why on the raw body rather than on the decoded values: encoding/json (and
// sonic) replace invalid UTF-8 and lone surrogates with U+FFFD, so after
// decoding they can no longer be told from a U+FFFD the client meant, and a
// jsonb field (settings) keeps its raw text. The answer is 422 naming each
// field by its path (name, settings[2].value, cdrs[3].src), or 400 when the
// problem is not in any field.
func checkText(body []byte) error {
	// The common case costs two fast passes and no copy: in a valid JSON
	// document a NUL or a surrogate can only be written as a \u escape, and
	// invalid UTF-8 can only be inside a string.
	if utf8.Valid(body) && !bytes.Contains(body, []byte(`\u`)) {
		return nil
	}
	return checkTextString(string(body))
}

// checkTextString is checkText on a body held as a string.
func checkTextString(body string) error {
	if utf8.ValidString(body) && !suspectEscape(body) {
		return nil
	}
	return scanText(body)
}

// suspectEscape reports whether body has a \u escape of NUL or of a
// surrogate (paired or not), or something that looks like one (the text
// \\u0000 is an escaped backslash and "u0000"). Only then is the body
// scanned string by string: a batch of CDRs with \u00e9 in it costs a pass
// more, not a scan.
func suspectEscape(body string) bool {
	for i := strings.Index(body, `\u`); i >= 0; {
		if r, ok := hex4(body, i+2); ok && (r == 0 || r >= 0xD800 && r < 0xE000) {
			return true
		}
		next := strings.Index(body[i+2:], `\u`)
		if next < 0 {
			return false
		}
		i += 2 + next
	}
	return false
}

// textFrame is one level of the path to the string being scanned.
type textFrame struct {
	array    bool
	index    int    // array: the index of the current element
	key      string // object: the raw key (between its quotes) of the current member
	keyNext  bool   // object: the next string is a key
	keyValid bool   // object: key is set
	keyBad   bool   // object: key has a problem, reported on the object
}

// scanText walks a JSON document (one the decoder accepted; on anything
// else it stops without panicking) and names every string with a problem.
func scanText(body string) error {
	var (
		stack  []textFrame
		fields = controlplane.FieldErrors{}
		whole  string // the problem of a string that is in no field
	)
	report := func(stack []textFrame, reason string) {
		for _, f := range stack {
			if f.keyBad {
				return // named by its key, reported already
			}
		}
		path := textPath(stack)
		if path == "" {
			if whole == "" {
				whole = reason
			}
			return
		}
		fields.Add(path, reason)
	}
	for i := 0; i < len(body) && len(fields) < maxTextErrors; {
		switch body[i] {
		case '{':
			stack = append(stack, textFrame{keyNext: true})
			i++
		case '[':
			stack = append(stack, textFrame{array: true})
			i++
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			i++
		case ',':
			if n := len(stack); n > 0 {
				if stack[n-1].array {
					stack[n-1].index++
				} else {
					stack[n-1].keyNext = true
				}
			}
			i++
		case '"':
			end, reason := scanString(body, i)
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].keyNext {
				// A key: a bad one is reported on the object that holds it.
				if reason != "" {
					report(stack[:n-1], reason+" (in a key)")
				}
				f := &stack[n-1]
				f.key, f.keyNext, f.keyValid, f.keyBad = body[i+1:max(i+1, end-1)], false, true, reason != ""
			} else if reason != "" {
				report(stack, reason)
			}
			i = end
		default: // white space, ':', numbers, true, false, null
			i++
		}
	}
	if err := fields.Err(); err != nil {
		return err
	}
	switch whole {
	case "":
		return nil
	case controlplane.ReasonUTF8:
		return controlplane.Errorf(controlplane.BadRequest, "request body is not valid UTF-8")
	}
	return controlplane.Errorf(controlplane.BadRequest, "request body %s", whole)
}

// scanString reads the JSON string starting at body[start] (its opening
// quote) and returns the index after its closing quote, and the first
// problem found in it ("" if none).
func scanString(body string, start int) (end int, reason string) {
	i := start + 1
	for i < len(body) {
		for i < len(body) && plainStringByte[body[i]] {
			i++
		}
		if i == len(body) {
			break
		}
		c := body[i]
		switch {
		case c == '"':
			return i + 1, reason
		case c == '\\':
			if i+1 < len(body) && body[i+1] == 'u' {
				r, ok := hex4(body, i+2)
				i += 6
				switch {
				case !ok:
				case r == 0:
					reason = firstOf(reason, controlplane.ReasonNUL)
				case r >= 0xD800 && r < 0xDC00:
					// A high surrogate counts only with a low one right after it.
					if strings.HasPrefix(body[i:], `\u`) && isLowSurrogate(hex4(body, i+2)) {
						i += 6
					} else {
						reason = firstOf(reason, controlplane.ReasonSurrogate)
					}
				case r >= 0xDC00 && r < 0xE000:
					reason = firstOf(reason, controlplane.ReasonSurrogate)
				}
			} else {
				i += 2
			}
		default: // ≥ 0x80: plainStringByte stops at nothing else
			r, size := utf8.DecodeRuneInString(body[i:])
			if r == utf8.RuneError && size == 1 {
				reason = firstOf(reason, controlplane.ReasonUTF8)
			}
			i += size
		}
	}
	return len(body), reason
}

// plainStringByte marks the bytes scanString passes over: ASCII other than
// the quote and the backslash.
var plainStringByte = func() (t [256]bool) {
	for c := 0; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hex4 reads the four hex digits of a \u escape at body[i:i+4].
func hex4(body string, i int) (rune, bool) {
	if i+4 > len(body) {
		return 0, false
	}
	n, err := strconv.ParseUint(body[i:i+4], 16, 32)
	return rune(n), err == nil
}

func isLowSurrogate(r rune, ok bool) bool { return ok && r >= 0xDC00 && r < 0xE000 }

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// textPath names the current string as the validator names fields:
// settings[2].value, cdrs[3].src. Keys are shown decoded.
func textPath(stack []textFrame) string {
	var b strings.Builder
	for _, f := range stack {
		switch {
		case f.array:
			b.WriteString("[" + strconv.Itoa(f.index) + "]")
		case f.keyValid:
			var key string
			if json.Unmarshal([]byte(`"`+f.key+`"`), &key) != nil {
				key = f.key
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(key)
		}
	}
	return b.String()
}

// checkParams refuses a request whose path or query parameters hold NUL or
// invalid UTF-8, before any handler reads them: they are filters and search
// terms that reach PostgreSQL as query arguments (?q=, ?phone=, ?src=,
// ?prefix=...), where they failed the statement (500). One middleware
// covers every route, present and future, so no handler checks its own.
//
// A query parameter is 422 naming it, as any bad parameter is; a path
// parameter is 400, as a malformed id in the path is.
func checkParams(c *gin.Context) {
	if err := paramsProblem(c); err != nil {
		_ = c.Error(err)
		c.Abort()
		return
	}
	c.Next()
}

func paramsProblem(c *gin.Context) error {
	for _, p := range c.Params {
		if reason := controlplane.TextProblem(p.Value); reason != "" {
			return &controlplane.Error{Code: controlplane.BadRequest, Message: p.Key + " in the path " + reason, Fields: map[string]string{p.Key: reason}}
		}
	}
	// A NUL or a byte of a multi-byte sequence arrives percent-encoded, or
	// as a raw byte ≥ 0x80 (net/http refuses raw control characters in the
	// request line): a query without either needs no parsing here.
	raw := c.Request.URL.RawQuery
	if !strings.Contains(raw, "%") && utf8.ValidString(raw) {
		return nil
	}
	fields := controlplane.FieldErrors{}
	for name, values := range c.Request.URL.Query() {
		if reason := controlplane.TextProblem(name); reason != "" {
			return controlplane.Errorf(controlplane.BadRequest, "a query parameter name %s", reason)
		}
		for _, v := range values {
			if reason := controlplane.TextProblem(v); reason != "" {
				fields.Add(name, reason)
			}
		}
	}
	return fields.Err()
}
