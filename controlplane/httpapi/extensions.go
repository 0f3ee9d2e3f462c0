package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/extensions"
)

// extensionRoutes are tenant routes: each runs inside inTenant (tenantAPI), with its tenant entered.
func (s *Server) extensionRoutes(api tenantAPI) {
	resource[extensions.Extension, extensions.Spec, extensions.Patch]{
		path: "/extensions",
		store: func(in tenantScope) items[extensions.Extension, extensions.Spec, extensions.Patch] {
			return extensionStore(in)
		},
		spec: extensions.NewSpec,
		id:   func(e *extensions.Extension) int64 { return e.ID },
		list: func(c *gin.Context, in tenantScope, limit, offset int) ([]extensions.Extension, int, error) {
			return extensionStore(in).List(c.Request.Context(), limit, offset)
		},
	}.routes(api)
}

func extensionStore(in tenantScope) *extensions.Store {
	return &extensions.Store{DB: in.DB, Tenant: in.Tenant}
}
