package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// serverList is the body of GET /api/servers: every server (there are
// few), by name.
type serverList struct {
	Data []controlplane.Server `json:"data"`
}

func (s *Server) serverRoutes(api *gin.RouterGroup) {
	api.POST("/servers", handle(s.createServer))
	api.GET("/servers", handle(s.listServers))
	api.GET("/servers/:name", handle(s.getServer))
	api.PATCH("/servers/:name", handle(s.patchServer))
	api.DELETE("/servers/:name", handle(s.deleteServer))
}

// createServer answers 201 with the server as stored: its URL without the
// password the request may have carried.
func (s *Server) createServer(c *gin.Context) error {
	var spec controlplane.ServerSpec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	srv, err := s.Servers.Create(c.Request.Context(), spec)
	if err != nil {
		return err
	}
	c.Header("Location", "/api/servers/"+srv.Name)
	c.JSON(http.StatusCreated, srv)
	return nil
}

func (s *Server) listServers(c *gin.Context) error {
	list, err := s.Servers.List(c.Request.Context())
	return reply(c, http.StatusOK, serverList{Data: list}, err)
}

func (s *Server) getServer(c *gin.Context) error {
	srv, err := s.Servers.Get(c.Request.Context(), c.Param("name"))
	return reply(c, http.StatusOK, srv, err)
}

func (s *Server) patchServer(c *gin.Context) error {
	var patch controlplane.ServerPatch
	if err := decodeJSON(c, &patch); err != nil {
		return err
	}
	srv, err := s.Servers.Patch(c.Request.Context(), c.Param("name"), patch)
	return reply(c, http.StatusOK, srv, err)
}

func (s *Server) deleteServer(c *gin.Context) error {
	return noContent(c, s.Servers.Delete(c.Request.Context(), c.Param("name")))
}
