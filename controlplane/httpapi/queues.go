package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/queues"
)

// memberList is the body of the members endpoints.
type memberList struct {
	Data []queues.Member `json:"data"`
}

// memberReplace is the body of PUT /api/queues/{id}/members.
type memberReplace struct {
	Members []queues.MemberSpec `json:"members"`
}

func (s *Server) queueRoutes(api tenantAPI) {
	resource[queues.Queue, queues.Spec, queues.Patch]{
		path:  "/queues",
		store: func(in tenantScope) items[queues.Queue, queues.Spec, queues.Patch] { return queueStore(in) },
		spec:  queues.NewSpec,
		id:    func(q *queues.Queue) int64 { return q.ID },
		list: func(c *gin.Context, in tenantScope, limit, offset int) ([]queues.Queue, int, error) {
			return queueStore(in).List(c.Request.Context(), limit, offset)
		},
	}.routes(api)
	api.GET("/queues/:id/members", listMembers)
	api.POST("/queues/:id/members", addMember)
	api.PUT("/queues/:id/members", replaceMembers)
	api.DELETE("/queues/:id/members/:extension_id", removeMember)
}

func queueStore(in tenantScope) *queues.Store {
	return &queues.Store{DB: in.DB, Tenant: in.Tenant}
}

func listMembers(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ms, err := queueStore(in).Members(c.Request.Context(), id)
	return reply(c, http.StatusOK, memberList{Data: ms}, err)
}

func addMember(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var spec queues.MemberSpec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	m, err := queueStore(in).AddMember(c.Request.Context(), id, spec)
	return reply(c, http.StatusCreated, m, err)
}

func replaceMembers(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var body memberReplace
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	ms, err := queueStore(in).ReplaceMembers(c.Request.Context(), id, body.Members)
	return reply(c, http.StatusOK, memberList{Data: ms}, err)
}

func removeMember(c *gin.Context, in tenantScope) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ext, err := pathID(c, "extension_id")
	if err != nil {
		return err
	}
	return noContent(c, queueStore(in).RemoveMember(c.Request.Context(), id, ext))
}
