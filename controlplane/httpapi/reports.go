package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// reportRoutes are tenant routes: they run only behind tenantOnly.
func (s *Server) reportRoutes(api *gin.RouterGroup) {
	api.GET("/reports/calls", handle(callReport))
}

// callReport answers GET /api/reports/calls?from=YYYY-MM-DD&to=YYYY-MM-DD&group=day|hour,
// bucketed in the tenant's timezone as it is now.
func callReport(c *gin.Context) error {
	r, err := cdrStore(c).CallReport(c.Request.Context(), c.Query("from"), c.Query("to"), c.Query("group"))
	return reply(c, http.StatusOK, r, err)
}
