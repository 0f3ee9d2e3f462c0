package httpapi

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/dids"
)

// didRoutes are the tenant's DID routes; GET /api/dids/{x} is shared with
// the operator lookup and registered on the engine by didLookupRoute.
func (s *Server) didRoutes(api tenantAPI) {
	resource[dids.DID, dids.Spec, dids.Patch]{
		path:  "/dids",
		store: func(in tenantScope) items[dids.DID, dids.Spec, dids.Patch] { return didItems{s.didService(in)} },
		spec:  dids.NewSpec,
		id:    func(d *dids.DID) int64 { return d.ID },
		list: func(c *gin.Context, in tenantScope, limit, offset int) ([]dids.DID, int, error) {
			return s.didService(in).Store.List(c.Request.Context(), limit, offset)
		},
		getElsewhere: true, // didLookupRoute
	}.routes(api)
}

// didLookupRoute: on an admin host GET /api/dids/{e164} answers which
// tenant and target an inbound call to that number goes to; on a tenant's
// host GET /api/dids/{id} reads the tenant's DID.
func (s *Server) didLookupRoute(r *gin.Engine) {
	r.GET("/api/dids/:key", s.operatorOrTenant(s.lookupDID, s.getDID))
}

func (s *Server) didService(in tenantScope) *dids.Service {
	return &dids.Service{Index: s.DIDIndex, Store: &dids.Store{DB: in.DB, Tenant: in.Tenant}, Log: s.Log}
}

// didItems are a tenant's DIDs by id: changed through the service, which
// keeps the catalog's DID index in step, read from the tenant's store.
type didItems struct{ *dids.Service }

func (d didItems) Get(ctx context.Context, id int64) (*dids.DID, error) { return d.Store.Get(ctx, id) }

// getDID is the tenant's side of GET /api/dids/{key}: its DID by id.
func (s *Server) getDID(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "key")
	if err != nil {
		return err
	}
	d, err := s.didService(in).Store.Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, d, err)
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
