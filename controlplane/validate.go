package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"github.com/nyaruka/phonenumbers"
)

// validate checks struct tags; the custom tags below carry the rules of
// docs/DOMAIN.md that the library does not know.
var validate = newValidator()

var (
	slugPattern   = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	e164Pattern   = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	extNumPattern = regexp.MustCompile(`^[0-9]{2,7}$`)
)

// hostLabel is one RFC 1123 label, already lower-cased.
var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// enums are the value lists of RegisterEnum's tags, for their messages.
var enums sync.Map // tag → []string

// RegisterEnum makes tag a validation rule for a string field that must be
// one of values: one Go list is then the rule, its message and what a
// test compares with the SQL CHECK that guards the column (an enumeration
// written in a struct tag too would be a second copy). Call it at package
// initialisation, before any validation runs.
func RegisterEnum(tag string, values []string) {
	allowed := slices.Clone(values)
	enums.Store(tag, allowed)
	if err := validate.RegisterValidation(tag, func(fl validator.FieldLevel) bool {
		return slices.Contains(allowed, fl.Field().String())
	}); err != nil {
		panic(err)
	}
}

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	// Report fields by their JSON names: they are what the client sent.
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(v.RegisterValidation("slug", func(fl validator.FieldLevel) bool {
		return slugPattern.MatchString(fl.Field().String())
	}))
	must(v.RegisterValidation("hostname_strict", func(fl validator.FieldLevel) bool {
		return ValidHostname(fl.Field().String())
	}))
	must(v.RegisterValidation("iana_tz", func(fl validator.FieldLevel) bool {
		return ValidTimezone(fl.Field().String())
	}))
	must(v.RegisterValidation("e164", func(fl validator.FieldLevel) bool {
		return ValidE164(fl.Field().String())
	}))
	must(v.RegisterValidation("ext_number", func(fl validator.FieldLevel) bool {
		return extNumPattern.MatchString(fl.Field().String())
	}))
	must(v.RegisterValidation("json_array", func(fl validator.FieldLevel) bool {
		raw := bytes.TrimSpace(fl.Field().Bytes())
		return len(raw) > 0 && raw[0] == '[' && json.Valid(raw)
	}))
	return v
}

// ValidHostname reports whether h is a lower-case DNS hostname made of RFC
// 1123 labels: no scheme, port, path, trailing dot or IP address.
func ValidHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	// An all-numeric last label would make an IPv4 address a "domain".
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// ValidTimezone reports whether name is an IANA zone of the tz database.
// "Local" is refused: it means the server's zone, which is not the tenant's.
func ValidTimezone(name string) bool {
	if name == "" || name == "Local" {
		return false
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// NewTenantSpec returns a spec holding the defaults of every optional
// field; a create or replace decodes the client's JSON over it, so what the
// client leaves out takes the default and what it sends, even an explicit
// empty value, is validated as sent.
func NewTenantSpec() TenantSpec {
	return TenantSpec{
		Status:        StatusActive,
		Timezone:      DefaultTimezone,
		MaxExtensions: DefaultMaxExtensions,
		Settings:      json.RawMessage("[]"),
	}
}

// Normalize canonicalises a spec before validation: a name is trimmed, a
// domain is lower-cased and loses one trailing dot (DNS's root), and an
// unset isolation takes defaultIsolation. Nothing else is silently changed:
// a port or scheme in the domain is an error, not something to strip.
func (s *TenantSpec) Normalize(defaultIsolation Isolation) {
	s.Name = strings.TrimSpace(s.Name)
	s.Domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s.Domain)), ".")
	if s.Isolation == "" {
		s.Isolation = defaultIsolation
	}
}

// Validate returns an Invalid *Error naming every field that breaks a rule.
func (s *TenantSpec) Validate() error {
	return ValidateStruct(s)
}

// ValidateStruct checks s's `validate` tags, with the custom rules of this
// package (slug, hostname_strict, iana_tz, json_array, e164, ext_number),
// and returns an Invalid *Error naming every bad field by its JSON name.
// Every resource validates through it, so the messages read alike.
func ValidateStruct(s any) error {
	err := validate.Struct(s)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return &Error{Code: Internal, Message: "validation failed", Err: err}
	}
	fields := FieldErrors{}
	for _, fe := range verrs {
		// The namespace names nested fields by path (phones[0].number);
		// its first element is the Go type, which the client never saw.
		_, path, _ := strings.Cut(fe.Namespace(), ".")
		fields.Add(path, reason(fe))
	}
	return fields.Err()
}

// reason turns a failed tag into a sentence a client can act on.
func reason(fe validator.FieldError) string {
	isString := fe.Kind() == reflect.String
	switch fe.Tag() {
	case "required":
		return "is required"
	case "max":
		if isString {
			return "must be at most " + fe.Param() + " characters"
		}
		return "must be at most " + fe.Param()
	case "min":
		if isString {
			return "must be at least " + fe.Param() + " characters"
		}
		return "must be at least " + fe.Param()
	case "oneof":
		return "must be one of: " + strings.Join(strings.Fields(fe.Param()), ", ")
	case "slug":
		return "must be lower-case letters and digits in words joined by single hyphens, e.g. acme-corp"
	case "hostname_strict":
		return "must be a hostname such as acme.example.com (letters, digits and hyphens; no scheme, port or path)"
	case "iana_tz":
		return "must be an IANA time zone name such as America/New_York"
	case "json_array":
		return "must be a JSON array"
	case "e164":
		return "must be an E.164 number: + and the country code, then a number of a length that country uses (at most 15 digits in all), e.g. +15551234567"
	case "ext_number":
		return "must be 2 to 7 digits"
	}
	if values, ok := enums.Load(fe.Tag()); ok {
		return "must be one of: " + strings.Join(values.([]string), ", ")
	}
	return fmt.Sprintf("is invalid (%s)", fe.Tag())
}

// NormalizeHost reduces a Host header to the form domains are stored in:
// lower-case, without port, brackets or trailing dot. "ACME.example.com.:8080"
// and "acme.example.com" are the same tenant.
func NormalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// ValidE164 reports whether s is an E.164 number (docs/DOMAIN.md): "+",
// then 2 to 15 digits, the first not 0, that libphonenumber's metadata
// finds possible: a country calling code that exists and a number of a
// length that country uses ("+12" and "+4420" are refused). Whether the
// range is assigned is not asked: a carrier's new range, or the fictional
// +1 555 and +44 7700 900 numbers of examples, must not wait for a library
// update. CDR ingest does not call it (numbers there are as dialled).
func ValidE164(s string) bool {
	if !e164Pattern.MatchString(s) {
		return false
	}
	n, err := phonenumbers.Parse(s, "")
	return err == nil && phonenumbers.IsPossibleNumber(n)
}

// NormalizeE164 removes the spaces, dashes, dots and parentheses people
// write phone numbers with ("+1 (555) 123-4567" → "+15551234567"). The
// result is validated as E.164 afterwards; nothing else is rewritten (no
// country code is guessed, a missing "+" stays missing and is refused).
func NormalizeE164(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')', '\t':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// The reasons a text value is refused, the same wherever it was sent (a
// JSON body, a query parameter, a CSV cell).
const (
	ReasonNUL       = "must not contain NUL characters"
	ReasonUTF8      = "must be valid UTF-8"
	ReasonSurrogate = `must not contain a lone UTF-16 surrogate escape (\ud800 to \udfff without its pair)`
)

// TextProblem says why s cannot be taken as text, or "" if it can.
//
// Why: PostgreSQL stores no NUL in text (nor \u0000 in jsonb) and refuses
// bytes that are not UTF-8, so a statement carrying either failed and the
// client saw a 500; where a JSON decoder had already replaced invalid UTF-8
// with U+FFFD, something else than what was sent was stored. Refused at
// the edge, the client learns which field is wrong.
func TextProblem(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return ReasonNUL
	}
	if !utf8.ValidString(s) {
		return ReasonUTF8
	}
	return ""
}
