package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// page is the body of every list route: one page of items, how many
// there are in all, and where the page is.
type page[T any] struct {
	Data   []T `json:"data"`
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
}

// replyPage reads ?limit= and ?offset= (pageParams), lists that page and
// renders it.
func replyPage[T any](c *gin.Context, list func(limit, offset int) ([]T, int, error)) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	items, total, err := list(limit, offset)
	return reply(c, http.StatusOK, page[T]{Data: items, Total: total, Limit: limit, Offset: offset}, err)
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

// items is what a tenant resource's store (or service) offers for its
// items by id. Each method keeps the resource's own rules (the cap, the
// number space, the DID index): the routes below only carry requests to
// them.
type items[T, S, P any] interface {
	Create(ctx context.Context, spec S) (*T, error)
	Get(ctx context.Context, id int64) (*T, error)
	Replace(ctx context.Context, id int64, spec S) (*T, error)
	Patch(ctx context.Context, id int64, p P) (*T, error)
	Delete(ctx context.Context, id int64) error
}

// resource is one tenant resource's standard routes under /api: POST and
// GET (a page) on path, GET, PUT, PATCH and DELETE on path/{id}. T is what
// the API returns, S a create's or replace's body, P a patch's. What a
// resource has beyond these (filters, members, imports) is registered
// beside them, in its own file.
type resource[T, S, P any] struct {
	path  string                           // "/extensions"
	store func(tenantScope) items[T, S, P] // bound to the request's tenant
	spec  func() S                         // the defaults a body fills (a create's, a replace's)
	id    func(*T) int64                   // for a create's Location
	list  func(c *gin.Context, in tenantScope, limit, offset int) ([]T, int, error)
	// getElsewhere: GET path/{id} is registered by the resource itself
	// (DIDs share it with the operator's lookup by number).
	getElsewhere bool
}

func (r resource[T, S, P]) routes(api tenantAPI) {
	api.POST(r.path, r.create)
	api.GET(r.path, func(c *gin.Context, in tenantScope) error {
		return replyPage(c, func(limit, offset int) ([]T, int, error) { return r.list(c, in, limit, offset) })
	})
	if !r.getElsewhere {
		api.GET(r.path+"/:id", r.get)
	}
	api.PUT(r.path+"/:id", r.replace)
	api.PATCH(r.path+"/:id", r.patch)
	api.DELETE(r.path+"/:id", r.delete)
}

func (r resource[T, S, P]) create(c *gin.Context, in tenantScope) error {
	spec := r.spec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	item, err := r.store(in).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api"+r.path+"/"+itoa(r.id(item)))
	}
	return reply(c, http.StatusCreated, item, err)
}

func (r resource[T, S, P]) get(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	item, err := r.store(in).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, item, err)
}

func (r resource[T, S, P]) replace(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	spec := r.spec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	item, err := r.store(in).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, item, err)
}

func (r resource[T, S, P]) patch(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p P
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	item, err := r.store(in).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, item, err)
}

func (r resource[T, S, P]) delete(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, r.store(in).Delete(c.Request.Context(), id))
}
