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

func (s *Server) queueRoutes(api *gin.RouterGroup) {
	resource[queues.Queue, queues.Spec, queues.Patch]{
		path:  "/queues",
		store: func(c *gin.Context) items[queues.Queue, queues.Spec, queues.Patch] { return queueStore(c) },
		spec:  queues.NewSpec,
		id:    func(q *queues.Queue) int64 { return q.ID },
		list: func(c *gin.Context, limit, offset int) ([]queues.Queue, int, error) {
			return queueStore(c).List(c.Request.Context(), limit, offset)
		},
	}.routes(api)
	api.GET("/queues/:id/members", handle(listMembers))
	api.POST("/queues/:id/members", handle(addMember))
	api.PUT("/queues/:id/members", handle(replaceMembers))
	api.DELETE("/queues/:id/members/:extension_id", handle(removeMember))
}

func queueStore(c *gin.Context) *queues.Store {
	t, db := tenantDB(c)
	return &queues.Store{DB: db, Tenant: t}
}

func listMembers(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ms, err := queueStore(c).Members(c.Request.Context(), id)
	return reply(c, http.StatusOK, memberList{Data: ms}, err)
}

func addMember(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var spec queues.MemberSpec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	m, err := queueStore(c).AddMember(c.Request.Context(), id, spec)
	return reply(c, http.StatusCreated, m, err)
}

func replaceMembers(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var body memberReplace
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	ms, err := queueStore(c).ReplaceMembers(c.Request.Context(), id, body.Members)
	return reply(c, http.StatusOK, memberList{Data: ms}, err)
}

func removeMember(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ext, err := pathID(c, "extension_id")
	if err != nil {
		return err
	}
	return noContent(c, queueStore(c).RemoveMember(c.Request.Context(), id, ext))
}
