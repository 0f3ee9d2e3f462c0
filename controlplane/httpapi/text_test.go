package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
)

const (
	nul  = controlplane.ReasonNUL
	utf  = controlplane.ReasonUTF8
	surr = controlplane.ReasonSurrogate
)

func TestCheckText(t *testing.T) {
	for body, want := range map[string]map[string]string{
		`{"name":"a\u0000b"}`:                                    {"name": nul},
		"{\"name\":\"a\xffb\"}":                                  {"name": utf},
		"{\"name\":\"a\xed\xa0\x80b\"}":                          {"name": utf}, // a surrogate encoded in UTF-8 is not UTF-8
		"{\"name\":\"\xc3\"}":                                    {"name": utf}, // a sequence cut short
		`{"name":"\ud800"}`:                                      {"name": surr},
		`{"name":"\udc00\ud800"}`:                                {"name": surr},
		`{"name":"\ud800\u0041"}`:                                {"name": surr},
		`{"name":"\ud800\ud800\udc00"}`:                          {"name": surr},
		`{"name":"\u0000","x":"\u0000"}`:                         {"name": nul, "x": nul},
		`{"settings":[{"key":"moh","value":"\u0000"}]}`:          {"settings[0].value": nul},
		`{"settings":[1,"x",[true,"\ud800"]]}`:                   {"settings[2][1]": surr},
		`{"settings":[{"a\u0000":1}]}`:                           {"settings[0]": nul + " (in a key)"},
		`{"settings":[{"a.b":{"c":["\u0000"]}}]}`:                {"settings[0].a.b.c[0]": nul},
		`{"se\u0074tings":["ok", "\u0000"]}`:                     {"settings[1]": nul},
		`{"cdrs":[{},{"src":"1001"},{"src":"\udfff"}]}`:          {"cdrs[2].src": surr},
		`{"phones":[{"number":"+1","label":"a\u0000"}],"x":[]}`:  {"phones[0].label": nul},
		"{\"tags\":[\"a\",\"b\xff\",\"c\\u0000\"],\"n\":\"\"}":   {"tags[1]": utf, "tags[2]": nul},
		"{\"name\":\"\\u0000\xff\"}":                             {"name": nul}, // the first problem of a string
		`{"a":{},"b":[],"c":{"d":[{},{"e":"\u0000"}]},"f":null}`: {"c.d[1].e": nul},
	} {
		err := checkText([]byte(body))
		var de *controlplane.Error
		require.ErrorAs(t, err, &de, "%q", body)
		require.Equal(t, controlplane.Invalid, de.Code, "%q", body)
		require.Equal(t, want, de.Fields, "%q", body)
		require.Equal(t, err, checkTextString(body))
	}

	// What PostgreSQL stores as sent passes, escaped or not.
	for _, body := range []string{
		`{}`, `{"name":"Acme"}`, `{"name":"\u00e9\u00E9é"}`, `{"name":"😀\ud83d\ude00\uD83D\uDE00"}`, `{"name":"\\u0000"}`,
		`{"name":"\\\u0041"}`, `{"name":"\ufffd` + "\ufffd" + `"}`, `{"name":"\u0001\u001f\u007f"}`, `{"x":"\\\\u0000\\"}`, `[1,2,"\"\\"]`,
	} {
		require.NoError(t, checkText([]byte(body)), "%q", body)
	}

	// A string in no field (the body itself) is a bad body.
	for body, msg := range map[string]string{
		`"\u0000"`:            "request body must not contain NUL characters",
		"\"\xff\"":            "request body is not valid UTF-8",
		`{"\ud800":1}`:        "request body " + surr + " (in a key)",
		"{\"\xff\":\"\xff\"}": "request body must be valid UTF-8 (in a key)",
	} {
		err := checkText([]byte(body))
		var de *controlplane.Error
		require.ErrorAs(t, err, &de, "%q", body)
		require.Equal(t, controlplane.BadRequest, de.Code, "%q", body)
		require.Equal(t, msg, de.Message, "%q", body)
	}
	// What is under a bad key is not named by it: the key is the problem.
	var de *controlplane.Error
	require.ErrorAs(t, checkText([]byte("{\"a\":{\"\xff\":\"\xff\"},\"b\":[{\"\\u0000\":[\"\\u0000\"]}]}")), &de)
	require.Equal(t, map[string]string{"a": utf + " (in a key)", "b[0]": nul + " (in a key)"}, de.Fields)

	// A body full of NULs gets a readable answer.
	many := `{"tags":[` + strings.Repeat(`"\u0000",`, 1000) + `"x"]}`
	require.ErrorAs(t, checkText([]byte(many)), &de)
	require.Len(t, de.Fields, maxTextErrors)
}

// FuzzCheckText: on any document encoding/json accepts, checkText refuses
// exactly what PostgreSQL cannot store or encoding/json silently alters (a
// NUL, invalid UTF-8, a lone surrogate: the latter two decode to U+FFFD),
// and only with a 422 naming fields or a 400; it never panics on anything.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{
		`{"name":"Acme","settings":[{"key":"moh","value":"jazz"}]}`, `{"name":"a\u0000b"}`, "{\"name\":\"a\xffb\"}", `{"x":"\ud800"}`,
		`{"x":"\ud83d\ude00"}`, `{"x":"\\u0000"}`, `["\udc00\ud800"]`, `"\u0000"`, `{"a\u0000":{"b":["\uFFFD","\ufffd"]}}`,
		"[\"\xed\xa0\x80\",\"\xef\xbf\xbd\"]", `{"a":"\ud800\u0041"}`, `{"a":"\ud800`, `{"a":"\u12`, `"\`, `{"a":["b"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := checkText(body)
		require.Equal(t, err, checkTextString(string(body)))
		if err != nil {
			var de *controlplane.Error
			require.ErrorAs(t, err, &de)
			require.Contains(t, []controlplane.Code{controlplane.Invalid, controlplane.BadRequest}, de.Code)
			require.Equal(t, de.Code == controlplane.Invalid, len(de.Fields) > 0)
			for path, reason := range de.Fields {
				require.NotEmpty(t, path)
				require.NotEmpty(t, reason)
			}
		}
		if !json.Valid(body) {
			return
		}
		clean := utf8.Valid(body) && !hasNUL(t, body) && replacements(t, body) == writtenFFFD(body)
		require.Equal(t, clean, err == nil, "%q: %v", body, err)
	})
}

// hasNUL reports whether any string or key of a valid JSON document decodes
// to text with a NUL.
func hasNUL(t *testing.T, body []byte) bool {
	found := false
	eachString(t, body, func(s string) { found = found || strings.IndexByte(s, 0) >= 0 })
	return found
}

// replacements counts the U+FFFD in the decoded strings and keys.
func replacements(t *testing.T, body []byte) int {
	n := 0
	eachString(t, body, func(s string) { n += strings.Count(s, "\ufffd") })
	return n
}

// eachString calls fn with every string and key of a valid JSON document,
// duplicates included, as encoding/json decodes them.
func eachString(t *testing.T, body []byte, fn func(string)) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		if s, ok := tok.(string); ok {
			fn(s)
		}
	}
}

// writtenFFFD counts the U+FFFD a valid UTF-8 JSON document holds on
// purpose: as the character itself, or as a \ufffd escape (a backslash
// preceded by an even number of backslashes).
func writtenFFFD(body []byte) int {
	n := strings.Count(string(body), "\ufffd")
	s := strings.ToLower(string(body))
	for i := strings.Index(s, `\ufffd`); i >= 0; {
		run := 0
		for j := i; j >= 0 && s[j] == '\\'; j-- {
			run++
		}
		if run%2 == 1 {
			n++
		}
		next := strings.Index(s[i+1:], `\ufffd`)
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return n
}

// requireCleanText is the property of every decoder of a request body: what
// it accepts holds only text PostgreSQL stores as sent. The body was valid
// UTF-8, and no string of v (a decoded struct, json.RawMessage included)
// holds a NUL or a U+FFFD the client did not write.
func requireCleanText(t *testing.T, body []byte, v any) {
	t.Helper()
	require.True(t, utf8.Valid(body), "accepted a body that is not UTF-8: %q", body)
	fffd := 0
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice:
			if raw, ok := v.Interface().(json.RawMessage); ok {
				if json.Valid(raw) {
					require.False(t, hasNUL(t, raw), "accepted %q holding a NUL", body)
					fffd += replacements(t, raw)
				}
				return
			}
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.String:
			require.NotContains(t, v.String(), "\x00", "accepted %q holding a NUL", body)
			fffd += strings.Count(v.String(), "\ufffd")
		}
	}
	walk(reflect.ValueOf(v))
	require.LessOrEqual(t, fffd, writtenFFFD(body), "accepted %q and replaced some of its text with U+FFFD", body)
}

func TestCheckParams(t *testing.T) {
	r := gin.New()
	r.Use(writeErrors(slog.New(slog.DiscardHandler)), checkParams)
	r.GET("/things/:id", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	for target, want := range map[string]struct {
		status int
		fields map[string]string
	}{
		"/things/1?q=acme&phone=+15551234567": {http.StatusOK, nil},
		"/things/%C3%A9?q=%C3%A9t%C3%A9":      {http.StatusOK, nil},
		"/things/1?q=a%00b":                   {http.StatusUnprocessableEntity, map[string]string{"q": nul}},
		"/things/1?q=a%FFb&src=1%00&dst=ok":   {http.StatusUnprocessableEntity, map[string]string{"q": utf, "src": nul}},
		"/things/1?q=\xff":                    {http.StatusUnprocessableEntity, map[string]string{"q": utf}},
		"/things/1?q=ok&q=%ED%A0%80":          {http.StatusUnprocessableEntity, map[string]string{"q": utf}},
		"/things/a%00b":                       {http.StatusBadRequest, map[string]string{"id": nul}},
		"/things/%FF?q=%00":                   {http.StatusBadRequest, map[string]string{"id": utf}},
		"/things/1?a%00b=1":                   {http.StatusBadRequest, nil},
	} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		var err error
		req.URL, err = req.URL.Parse(target)
		require.NoError(t, err)
		r.ServeHTTP(w, req)
		require.Equal(t, want.status, w.Code, "%s: %s", target, w.Body)
		if want.status == http.StatusOK {
			continue
		}
		var got errorBody
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), target)
		require.Equal(t, want.fields, got.Error.Fields, target)
	}
}

// BenchmarkCheckText is the text check's share of a 1,000-CDR batch
// (compare BenchmarkDecodeCDRs): the usual body, without a \u escape, costs
// two fast passes; escapes of other characters a look at each; escaped
// surrogate pairs (an emoji) a scan string by string.
func BenchmarkCheckText(b *testing.B) {
	plain := batchBody(cdrs.MaxBatch)
	for name, body := range map[string]string{
		"plain": plain, "escapes": strings.ReplaceAll(plain, "1001", `\u00e9`), "pairs": strings.ReplaceAll(plain, "1001", `\ud83d\ude00`),
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if checkTextString(body) != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}
