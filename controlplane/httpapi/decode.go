package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// decodeJSON reads exactly one JSON object into dst, strictly: unknown
// fields and wrongly typed values are 422 naming the field, malformed JSON
// is 400, a body over MaxBodyBytes is 413, and a string holding NUL or
// invalid UTF-8 is 422 naming the field (checkText).
func decodeJSON(c *gin.Context, dst any) error {
	var b bytes.Buffer
	if n := c.Request.ContentLength; n > 0 && n <= MaxBodyBytes {
		b.Grow(int(n))
	}
	if _, err := b.ReadFrom(c.Request.Body); err != nil {
		return decodeError(err)
	}
	return decodeBytes(b.Bytes(), dst)
}

// decodeBytes is decodeJSON on a body already read. The body is read whole
// first (json.Decoder buffers all of it anyway) because the text check
// needs the raw bytes: decoding has already replaced invalid UTF-8.
func decodeBytes(body []byte, dst any) error {
	if err := decodeOne(body, dst); err != nil {
		return err
	}
	return checkText(body)
}

// decodeOne is decodeBytes without the text check.
func decodeOne(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return controlplane.Errorf(controlplane.BadRequest, "request body must hold a single JSON object")
	}
	return nil
}

// readBody reads the whole body (at most MaxBodyBytes: more is 413) as a
// string, for decoders that make one pass over it and share its memory.
func readBody(c *gin.Context) (string, error) {
	var b strings.Builder
	if n := c.Request.ContentLength; n > 0 && n <= MaxBodyBytes {
		b.Grow(int(n))
	}
	if _, err := io.Copy(&b, c.Request.Body); err != nil {
		return "", decodeError(err)
	}
	return b.String(), nil
}

func decodeError(err error) error {
	var (
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return controlplane.Errorf(controlplane.TooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return controlplane.Errorf(controlplane.BadRequest, "request body is empty; a JSON object is expected")
	case errors.As(err, &syntax):
		return controlplane.Errorf(controlplane.BadRequest, "malformed JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return controlplane.Errorf(controlplane.BadRequest, "malformed JSON: the body ends too early")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return controlplane.Errorf(controlplane.BadRequest, "request body must be a JSON object, not %s", typ.Value)
		}
		return controlplane.FieldError(typ.Field, "must be "+jsonKind(typ.Type.String())+", not "+typ.Value)
	}
	// encoding/json reports unknown fields only as text.
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, uerr := strconv.Unquote(field)
		if uerr != nil {
			name = field
		}
		return controlplane.FieldError(name, "is not a known field")
	}
	return &controlplane.Error{Code: controlplane.BadRequest, Message: "request body could not be read", Err: err}
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string", strings.HasPrefix(goType, "controlplane."):
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	}
	return "a " + goType
}

// pathID parses the named path parameter as a positive integer id.
func pathID(c *gin.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id < 1 {
		return 0, &controlplane.Error{Code: controlplane.BadRequest, Message: fmt.Sprintf("%s must be a positive integer", name), Fields: map[string]string{name: "must be a positive integer"}}
	}
	return id, nil
}

// queryInt parses an optional integer query parameter.
func queryInt(c *gin.Context, name string, fields controlplane.FieldErrors) int {
	v, ok := c.GetQuery(name)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fields.Add(name, "must be an integer")
	}
	return n
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
