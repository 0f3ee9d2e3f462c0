package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// TestOutagesRenderAs503 checks the renderer on errors no store translated:
// an outage (here a real refused connection, wrapped as code would wrap
// it) is 503 unavailable with Retry-After, a bug is 500 internal; neither
// body shows the cause, and both are logged with it.
func TestOutagesRenderAs503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, refused := net.Dial("tcp", addr)
	require.Error(t, refused)

	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   controlplane.Code
	}{
		{"outage", fmt.Errorf("load rates: %w", refused), http.StatusServiceUnavailable, controlplane.Unavailable},
		{"bug", fmt.Errorf("load rates: %w", errors.New("index out of range at "+addr)), http.StatusInternalServerError, controlplane.Internal},
		{"domain", &controlplane.Error{Code: controlplane.TenantUnavailable, Message: "tenant acme is not available", Err: refused}, http.StatusServiceUnavailable, controlplane.TenantUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := gin.New()
			r.Use(writeErrors(slog.New(slog.NewTextHandler(&logs, nil))))
			r.GET("/x", handle(func(*gin.Context) error { return tc.err }))
			w := httptest.NewRecorder()
			r.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))

			require.Equal(t, tc.status, w.Code)
			raw, _ := io.ReadAll(w.Body)
			var body errorBody
			require.NoError(t, json.Unmarshal(raw, &body))
			require.Equal(t, tc.code, body.Error.Code)
			require.NotContains(t, string(raw), addr)
			require.NotContains(t, string(raw), "127.0.0.1")
			if tc.status == http.StatusServiceUnavailable {
				require.Equal(t, retryAfter, w.Header().Get("Retry-After"))
			} else {
				require.Empty(t, w.Header().Get("Retry-After"))
			}
			require.Contains(t, logs.String(), addr, "the cause is in the log")
		})
	}
}
