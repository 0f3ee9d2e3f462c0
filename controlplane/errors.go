// Package controlplane is the domain of the control plane: tenants, their
// lifecycle rules, the errors every layer speaks, and the interfaces the
// domain needs from storage (Catalog) and from tenant databases
// (Provisioner). It imports neither gin nor gorm: those live in httpapi and
// in the implementations wired together by cmd/controlplane.
package controlplane

import (
	"errors"
	"fmt"
)

// Code is one of a small fixed set of error kinds. httpapi maps each to one
// HTTP status in a single table; nothing else decides statuses.
type Code string

// The error codes. Anything not wrapped in an *Error is reported as Internal
// with a generic message, and its details go to the log only.
const (
	Invalid            Code = "invalid"             // 422: a field breaks a rule
	BadRequest         Code = "bad_request"         // 400: malformed request (e.g. JSON syntax)
	TooLarge           Code = "too_large"           // 413: request body over the limit
	NotFound           Code = "not_found"           // 404
	Conflict           Code = "conflict"            // 409: uniqueness or state conflict
	QuotaExceeded      Code = "quota_exceeded"      // 409: a hard cap was reached
	NoCapacity         Code = "no_capacity"         // 409: no tenant server may take a new tenant
	UnknownTenant      Code = "unknown_tenant"      // 404: no tenant has this host or slug
	TenantSuspended    Code = "tenant_suspended"    // 403
	TenantUnavailable  Code = "tenant_unavailable"  // 503: tenant not provisioned (yet)
	Unavailable        Code = "unavailable"         // 503: try again later
	RateLimited        Code = "rate_limited"        // 429: the tenant has too many requests in progress
	Unauthorized       Code = "unauthorized"        // 401
	ProvisioningFailed Code = "provisioning_failed" // 500: the tenant is recorded as failed; retry is possible
	Internal           Code = "internal"            // 500: a bug or an outage; details logged only
)

// Error is the domain error. Message is safe to show to the API client;
// Fields names the offending input fields (JSON names) with a reason each;
// Err, if any, is the underlying cause, logged but never returned.
type Error struct {
	Code    Code
	Message string
	Fields  map[string]string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an Invalid error naming one field.
func FieldError(field, reason string) *Error {
	return &Error{Code: Invalid, Message: field + " " + reason, Fields: map[string]string{field: reason}}
}

// ErrorCode returns the code of err, Internal for anything that is not an
// *Error and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// FieldErrors collects per-field validation failures; Err returns nil when
// there are none, so validators read as a list of checks.
type FieldErrors map[string]string

// Add records reason for field, keeping the first reason per field.
func (f FieldErrors) Add(field, reason string) {
	if _, ok := f[field]; !ok {
		f[field] = reason
	}
}

// Err returns an Invalid *Error listing every field, or nil.
func (f FieldErrors) Err() error {
	if len(f) == 0 {
		return nil
	}
	msg := "invalid input"
	if len(f) == 1 {
		for k, v := range f {
			msg = k + " " + v
		}
	}
	return &Error{Code: Invalid, Message: msg, Fields: map[string]string(f)}
}
