package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// FuzzDecodeTenantSpec feeds arbitrary bodies through the strict decoder
// and the tenant rules, as POST /api/tenants does: every outcome is a
// domain error with a 4xx status, or a valid spec holding only text
// PostgreSQL stores as sent (no NUL, nothing replaced by U+FFFD); never a
// panic, never a 500.
func FuzzDecodeTenantSpec(f *testing.F) {
	for _, s := range []string{
		`{"name":"Acme Corp","slug":"acme-corp","domain":"acme.example.com","status":"active","timezone":"America/New_York","max_extensions":50,"settings":[]}`,
		`{"name":1}`, `[]`, `null`, `{"settings":{"a":1}}`, `{"max_extensions":1e309}`, `{"a":1}{"b":2}`, `{"name":"x","name":"y"}`,
		"{\"name\":\"\\ud800\"}", `{"max_extensions":-0}`, `{"isolation":null}`,
		`{"name":"A\u0000","slug":"a","domain":"a.example.com"}`, "{\"name\":\"A\xff\",\"slug\":\"a\",\"domain\":\"a.example.com\"}",
		`{"name":"A","slug":"a","domain":"a.example.com","settings":[{"key":"moh","value":"\u0000"}]}`,
		`{"name":"A","slug":"a","domain":"a.example.com","settings":[{"k\u0000":1},"\udc00"]}`,
		"{\"name\":\"A\",\"slug\":\"a\",\"domain\":\"a.example.com\",\"settings\":[\"\xed\xa0\x80\"]}",
		`{"name":"\ud83d\ude00 \ufffd","slug":"a","domain":"a.example.com","settings":["\\u0000"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodPost, "/api/tenants", bytes.NewReader(body))
		c.Request.Body = http.MaxBytesReader(w, c.Request.Body, MaxBodyBytes)
		spec := controlplane.NewTenantSpec()
		err := decodeJSON(c, &spec)
		if err == nil {
			spec.Normalize(controlplane.IsolationDatabase)
			err = spec.Validate()
		}
		if err == nil {
			requireCleanText(t, body, spec)
			return
		}
		code := controlplane.ErrorCode(err)
		status := statusOf[code]
		require.True(t, status >= 400 && status < 500, "code %s (%d) for %q: %v", code, status, body, err)
	})
}

// FuzzDecodeCDRs: the body of POST /api/cdrs (one CDR or {"cdrs": [...]})
// decodes, holding only text PostgreSQL stores as sent, or fails with a
// client error naming what is wrong.
func FuzzDecodeCDRs(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"6f9619ff-8b86-4011-b42d-00c04fc964ff","direction":"outbound","start_at":"2025-11-02T05:30:00Z"}`,
		`{"cdrs":[{"uuid":"a"},{"billsec":"x"}]}`, `{"cdrs":null}`, `{"cdrs":{}}`, `[{"uuid":"a"}]`, `{"cdrs":[1,2]}`, `{"cdrs":[],"x":1}`,
		`{"uuid":"a","src":"1001\u0000"}`, "{\"cdrs\":[{\"src\":\"1001\"},{\"dst\":\"\xff\"}]}", `{"cdrs":[{"disposition":"\ud800"}]}`,
		`{"cdrs":[{"src":"\u0000","billsec":"x"}]}`, `{"cdrs":[{"uu\u0000id":"a"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		c.Request = httptest.NewRequest(http.MethodPost, "/api/cdrs", bytes.NewReader(body))
		c.Request.Body = http.MaxBytesReader(w, c.Request.Body, MaxBodyBytes)
		one, batch, err := decodeCDRs(c)
		if err == nil {
			requireCleanText(t, body, []any{one, batch})
			return
		}
		status := statusOf[controlplane.ErrorCode(err)]
		require.True(t, status >= 400 && status < 500, "%q: %v", body, err)
	})
}
