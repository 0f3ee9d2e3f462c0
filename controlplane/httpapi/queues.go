package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/queues"
)

// queueList is the body of GET /api/queues.
type queueList struct {
	Data   []queues.Queue `json:"data"`
	Total  int            `json:"total"`
	Limit  int            `json:"limit"`
	Offset int            `json:"offset"`
}

// memberList is the body of the members endpoints.
type memberList struct {
	Data []queues.Member `json:"data"`
}

// memberReplace is the body of PUT /api/queues/{id}/members.
type memberReplace struct {
	Members []queues.MemberSpec `json:"members"`
}

func (s *Server) queueRoutes(api *gin.RouterGroup) {
	api.POST("/queues", handle(createQueue))
	api.GET("/queues", handle(listQueues))
	api.GET("/queues/:id", handle(getQueue))
	api.PUT("/queues/:id", handle(replaceQueue))
	api.PATCH("/queues/:id", handle(patchQueue))
	api.DELETE("/queues/:id", handle(deleteQueue))
	api.GET("/queues/:id/members", handle(listMembers))
	api.POST("/queues/:id/members", handle(addMember))
	api.PUT("/queues/:id/members", handle(replaceMembers))
	api.DELETE("/queues/:id/members/:extension_id", handle(removeMember))
}

func queueStore(c *gin.Context) *queues.Store {
	t, db := tenantDB(c)
	return &queues.Store{DB: db, Tenant: t}
}

func createQueue(c *gin.Context) error {
	spec := queues.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	q, err := queueStore(c).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api/queues/"+itoa(q.ID))
	}
	return reply(c, http.StatusCreated, q, err)
}

func listQueues(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	list, total, err := queueStore(c).List(c.Request.Context(), limit, offset)
	return reply(c, http.StatusOK, queueList{Data: list, Total: total, Limit: limit, Offset: offset}, err)
}

func getQueue(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	q, err := queueStore(c).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, q, err)
}

func replaceQueue(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	spec := queues.NewSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	q, err := queueStore(c).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, q, err)
}

func patchQueue(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p queues.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	q, err := queueStore(c).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, q, err)
}

func deleteQueue(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, queueStore(c).Delete(c.Request.Context(), id))
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
