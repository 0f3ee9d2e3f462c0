package httpapi

import (
	"bytes"
	"io"
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// MaxImportBytes bounds the body of POST /api/rates/import (see
// bodyLimits): a deck of a few hundred thousand rates fits, where every
// other body keeps MaxBodyBytes. The file is read into memory before it is
// parsed, so this is also the memory one import may take.
const MaxImportBytes = 16 << 20

// importResult is the body of POST /api/rates/import.
type importResult struct {
	Imported int `json:"imported"`
}

// rateRoutes are tenant routes: each runs inside inTenant (tenantAPI), with its tenant entered.
func (s *Server) rateRoutes(api tenantAPI) {
	resource[rates.Rate, rates.Spec, rates.Patch]{
		path:  "/rates",
		store: func(in tenantScope) items[rates.Rate, rates.Spec, rates.Patch] { return rateStore(in) },
		spec:  func() rates.Spec { return rates.Spec{} },
		id:    func(r *rates.Rate) int64 { return r.ID },
		list: func(c *gin.Context, in tenantScope, limit, offset int) ([]rates.Rate, int, error) {
			return rateStore(in).List(c.Request.Context(), c.Query("prefix"), limit, offset)
		},
	}.routes(api)
	api.POST("/rates/import", importRates)
}

func rateStore(in tenantScope) *rates.Store {
	return &rates.Store{DB: in.DB, Tenant: in.Tenant}
}

// importRates takes a CSV body (Content-Type: text/csv), all rows or none.
// The body is read whole first, so a file over MaxImportBytes is a clean
// 413 rather than a CSV error halfway through.
func importRates(c *gin.Context, in tenantScope) error {
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt != "text/csv" {
		return controlplane.Errorf(controlplane.BadRequest, "send the rates as CSV with Content-Type: text/csv, not %q", c.GetHeader("Content-Type"))
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return decodeError(err)
	}
	n, err := rateStore(in).Import(c.Request.Context(), bytes.NewReader(body))
	return reply(c, http.StatusCreated, importResult{Imported: n}, err)
}
