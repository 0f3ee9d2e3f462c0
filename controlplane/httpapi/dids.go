package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/dids"
)

// didList is the body of GET /api/dids.
type didList struct {
	Data   []dids.DID `json:"data"`
	Total  int        `json:"total"`
	Limit  int        `json:"limit"`
	Offset int        `json:"offset"`
}

// didRoutes are the tenant's DID routes; GET /api/dids/{x} is shared with
// the operator lookup and registered on the engine by didLookupRoute.
func (s *Server) didRoutes(api *gin.RouterGroup) {
	api.POST("/dids", handle(s.createDID))
	api.GET("/dids", handle(listDIDs))
	api.PUT("/dids/:id", handle(s.replaceDID))
	api.PATCH("/dids/:id", handle(s.patchDID))
	api.DELETE("/dids/:id", handle(s.deleteDID))
}

// didLookupRoute: on an admin host GET /api/dids/{e164} answers which
// tenant and target an inbound call to that number goes to; on a tenant's
// host GET /api/dids/{id} reads the tenant's DID.
func (s *Server) didLookupRoute(r *gin.Engine) {
	r.GET("/api/dids/:key", s.operatorOrTenant(s.lookupDID, getDID))
}

func (s *Server) didService(c *gin.Context) *dids.Service {
	t, db := tenantDB(c)
	return &dids.Service{Index: s.DIDIndex, Store: &dids.Store{DB: db, Tenant: t}, Log: s.Log}
}

func (s *Server) createDID(c *gin.Context) error {
	spec := dids.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	d, err := s.didService(c).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api/dids/"+itoa(d.ID))
	}
	return reply(c, http.StatusCreated, d, err)
}

func listDIDs(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	t, db := tenantDB(c)
	list, total, err := (&dids.Store{DB: db, Tenant: t}).List(c.Request.Context(), limit, offset)
	return reply(c, http.StatusOK, didList{Data: list, Total: total, Limit: limit, Offset: offset}, err)
}

func getDID(c *gin.Context) error {
	id, err := pathID(c, "key")
	if err != nil {
		return err
	}
	t, db := tenantDB(c)
	d, err := (&dids.Store{DB: db, Tenant: t}).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, d, err)
}

func (s *Server) replaceDID(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	spec := dids.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	d, err := s.didService(c).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, d, err)
}

func (s *Server) patchDID(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p dids.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	d, err := s.didService(c).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, d, err)
}

func (s *Server) deleteDID(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, s.didService(c).Delete(c.Request.Context(), id))
}

// lookupDID is the operator's per-call lookup. An unencoded "+" in a path
// stays a "+", but "%2B" works too (the path is decoded).
func (s *Server) lookupDID(c *gin.Context) error {
	number := controlplane.NormalizeE164(c.Param("key"))
	if !controlplane.ValidE164(number) {
		return controlplane.FieldError("number", "must be an E.164 number such as +15551234567")
	}
	route, err := s.DIDIndex.LookupDID(c.Request.Context(), number)
	return reply(c, http.StatusOK, route, err)
}
