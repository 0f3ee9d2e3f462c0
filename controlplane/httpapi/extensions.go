package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/extensions"
)

// extensionRoutes are tenant routes: they run only behind tenantOnly.
func (s *Server) extensionRoutes(api *gin.RouterGroup) {
	resource[extensions.Extension, extensions.Spec, extensions.Patch]{
		path: "/extensions",
		store: func(c *gin.Context) items[extensions.Extension, extensions.Spec, extensions.Patch] {
			return extensionStore(c)
		},
		spec: extensions.NewSpec,
		id:   func(e *extensions.Extension) int64 { return e.ID },
		list: func(c *gin.Context, limit, offset int) ([]extensions.Extension, int, error) {
			return extensionStore(c).List(c.Request.Context(), limit, offset)
		},
	}.routes(api)
}

func extensionStore(c *gin.Context) *extensions.Store {
	t, db := tenantDB(c)
	return &extensions.Store{DB: db, Tenant: t}
}
