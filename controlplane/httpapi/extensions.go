package httpapi

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/extensions"
)

// extensionList is the body of GET /api/extensions.
type extensionList struct {
	Data   []extensions.Extension `json:"data"`
	Total  int                    `json:"total"`
	Limit  int                    `json:"limit"`
	Offset int                    `json:"offset"`
}

// extensionRoutes are tenant routes: they run only behind tenantOnly.
func (s *Server) extensionRoutes(api *gin.RouterGroup) {
	api.POST("/extensions", handle(createExtension))
	api.GET("/extensions", handle(listExtensions))
	api.GET("/extensions/:id", handle(getExtension))
	api.PUT("/extensions/:id", handle(replaceExtension))
	api.PATCH("/extensions/:id", handle(patchExtension))
	api.DELETE("/extensions/:id", handle(deleteExtension))
}

func extensionStore(c *gin.Context) *extensions.Store {
	t, db := tenantDB(c)
	return &extensions.Store{DB: db, Tenant: t}
}

func createExtension(c *gin.Context) error {
	spec := extensions.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	e, err := extensionStore(c).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api/extensions/"+itoa(e.ID))
	}
	return reply(c, http.StatusCreated, e, err)
}

func listExtensions(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	list, total, err := extensionStore(c).List(c.Request.Context(), limit, offset)
	return reply(c, http.StatusOK, extensionList{Data: list, Total: total, Limit: limit, Offset: offset}, err)
}

func getExtension(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	e, err := extensionStore(c).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, e, err)
}

func replaceExtension(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	spec := extensions.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	e, err := extensionStore(c).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, e, err)
}

func patchExtension(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p extensions.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	e, err := extensionStore(c).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, e, err)
}

func deleteExtension(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, extensionStore(c).Delete(c.Request.Context(), id))
}

// pageParams reads ?limit= (1..MaxPageSize, default DefaultPageSize) and
// ?offset= (≥ 0).
func pageParams(c *gin.Context) (limit, offset int, err error) {
	fields := controlplane.FieldErrors{}
	limit = queryInt(c, "limit", fields)
	offset = queryInt(c, "offset", fields)
	if _, given := c.GetQuery("limit"); !given {
		limit = controlplane.DefaultPageSize
	}
	if limit < 1 || limit > controlplane.MaxPageSize {
		fields.Add("limit", fmt.Sprintf("must be between 1 and %d", controlplane.MaxPageSize))
	}
	if offset < 0 {
		fields.Add("offset", "must be at least 0")
	}
	return limit, offset, fields.Err()
}
