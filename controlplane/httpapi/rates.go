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

// rateList is the body of GET /api/rates.
type rateList struct {
	Data   []rates.Rate `json:"data"`
	Total  int          `json:"total"`
	Limit  int          `json:"limit"`
	Offset int          `json:"offset"`
}

// importResult is the body of POST /api/rates/import.
type importResult struct {
	Imported int `json:"imported"`
}

// rateRoutes are tenant routes: they run only behind tenantOnly.
func (s *Server) rateRoutes(api *gin.RouterGroup) {
	api.POST("/rates", handle(createRate))
	api.GET("/rates", handle(listRates))
	api.POST("/rates/import", handle(importRates))
	api.GET("/rates/:id", handle(getRate))
	api.PUT("/rates/:id", handle(replaceRate))
	api.PATCH("/rates/:id", handle(patchRate))
	api.DELETE("/rates/:id", handle(deleteRate))
}

func rateStore(c *gin.Context) *rates.Store {
	t, db := tenantDB(c)
	return &rates.Store{DB: db, Tenant: t}
}

func createRate(c *gin.Context) error {
	var spec rates.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	r, err := rateStore(c).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api/rates/"+itoa(r.ID))
	}
	return reply(c, http.StatusCreated, r, err)
}

func listRates(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	list, total, err := rateStore(c).List(c.Request.Context(), c.Query("prefix"), limit, offset)
	return reply(c, http.StatusOK, rateList{Data: list, Total: total, Limit: limit, Offset: offset}, err)
}

func getRate(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	r, err := rateStore(c).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, r, err)
}

func replaceRate(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var spec rates.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	r, err := rateStore(c).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, r, err)
}

func patchRate(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p rates.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	r, err := rateStore(c).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, r, err)
}

func deleteRate(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, rateStore(c).Delete(c.Request.Context(), id))
}

// importRates takes a CSV body (Content-Type: text/csv), all rows or none.
// The body is read whole first, so a file over MaxImportBytes is a clean
// 413 rather than a CSV error halfway through.
func importRates(c *gin.Context) error {
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt != "text/csv" {
		return controlplane.Errorf(controlplane.BadRequest, "send the rates as CSV with Content-Type: text/csv, not %q", c.GetHeader("Content-Type"))
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return decodeError(err)
	}
	n, err := rateStore(c).Import(c.Request.Context(), bytes.NewReader(body))
	return reply(c, http.StatusCreated, importResult{Imported: n}, err)
}
