package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
)

// retryAfter is the Retry-After, in seconds, of every 503: the switches
// posting CDRs and operators' scripts retry on 503 (not on 500) and honour
// it, so an outage costs them a short wait instead of lost work.
const retryAfter = "5"

// statusOf is the one table from error code to HTTP status.
var statusOf = map[controlplane.Code]int{
	controlplane.Invalid:            http.StatusUnprocessableEntity,
	controlplane.BadRequest:         http.StatusBadRequest,
	controlplane.TooLarge:           http.StatusRequestEntityTooLarge,
	controlplane.NotFound:           http.StatusNotFound,
	controlplane.Conflict:           http.StatusConflict,
	controlplane.QuotaExceeded:      http.StatusConflict,
	controlplane.UnknownTenant:      http.StatusNotFound,
	controlplane.TenantSuspended:    http.StatusForbidden,
	controlplane.TenantUnavailable:  http.StatusServiceUnavailable,
	controlplane.Unavailable:        http.StatusServiceUnavailable,
	controlplane.RateLimited:        http.StatusTooManyRequests,
	controlplane.NoCapacity:         http.StatusConflict,
	controlplane.Unauthorized:       http.StatusUnauthorized,
	controlplane.ProvisioningFailed: http.StatusInternalServerError,
	controlplane.Internal:           http.StatusInternalServerError,
}

// errorBody is the shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    controlplane.Code `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// handle adapts a handler that returns an error; writeErrors renders it.
func handle(fn func(c *gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := fn(c); err != nil {
			_ = c.Error(err)
		}
	}
}

// reply writes v with status, or hands err to writeErrors.
func reply(c *gin.Context, status int, v any, err error) error {
	if err != nil {
		return err
	}
	c.JSON(status, v)
	return nil
}

// noContent answers 204, or hands err to writeErrors.
func noContent(c *gin.Context, err error) error {
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// PublicError is what a client may see of err: the domain error (an
// outage sqlerr recognises as one, or an internal error when it is
// neither), its HTTP status and a message that never carries an internal
// error's details. The API's JSON errors and the console's pages both
// answer with it, so an error has one status wherever it is shown.
func PublicError(err error) (de *controlplane.Error, status int, msg string) {
	if !errors.As(err, &de) {
		if de = sqlerr.Outage(err); de == nil {
			de = &controlplane.Error{Code: controlplane.Internal, Err: err}
		}
	}
	status, ok := statusOf[de.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	msg = de.Message
	if de.Code == controlplane.Internal || msg == "" {
		msg = "internal error; the details are in the server log"
	}
	return de, status, msg
}

// writeErrors is the middleware that turns the last error a handler
// recorded into the JSON error body. Errors that are not domain errors are
// outages if sqlerr recognises them as such (503, as if the store had
// translated them), bugs otherwise (500): either way the client gets a
// generic message, the log the details.
func writeErrors(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if len(c.Errors) == 0 {
			return
		}
		err := c.Errors.Last().Err
		de, status, msg := PublicError(err)
		if status >= 500 {
			log.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "status", status, "request_id", c.GetString(requestIDKey), "err", err)
		}
		switch status {
		case http.StatusServiceUnavailable:
			c.Header("Retry-After", retryAfter)
		case http.StatusTooManyRequests:
			// A tenant's own burst: its requests in progress end within
			// milliseconds, so a second is plenty.
			c.Header("Retry-After", "1")
		}
		c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: de.Code, Message: msg, Fields: de.Fields}})
	}
}
