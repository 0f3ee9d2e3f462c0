package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// reportRoutes are tenant routes: each runs inside inTenant (tenantAPI), with its tenant entered.
func (s *Server) reportRoutes(api tenantAPI) {
	api.GET("/reports/calls", callReport)
}

// callReport answers GET /api/reports/calls?from=YYYY-MM-DD&to=YYYY-MM-DD&group=day|hour,
// bucketed in the tenant's timezone as it is now.
func callReport(c *gin.Context, in tenantScope) error {
	r, err := cdrStore(in).CallReport(c.Request.Context(), c.Query("from"), c.Query("to"), c.Query("group"))
	return reply(c, http.StatusOK, r, err)
}
