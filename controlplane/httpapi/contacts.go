package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/contacts"
)

// contactRoutes are tenant routes. The list searches (?q=) and looks up
// caller ID (?phone=+15551234567).
func (s *Server) contactRoutes(api *gin.RouterGroup) {
	resource[contacts.Contact, contacts.Spec, contacts.Patch]{
		path:  "/contacts",
		store: func(c *gin.Context) items[contacts.Contact, contacts.Spec, contacts.Patch] { return contactStore(c) },
		spec:  func() contacts.Spec { return contacts.Spec{} },
		id:    func(ct *contacts.Contact) int64 { return ct.ID },
		list: func(c *gin.Context, limit, offset int) ([]contacts.Contact, int, error) {
			f := contacts.Filter{Query: c.Query("q"), Phone: c.Query("phone"), Limit: limit, Offset: offset}
			return contactStore(c).List(c.Request.Context(), f)
		},
	}.routes(api)
}

func contactStore(c *gin.Context) *contacts.Store {
	t, db := tenantDB(c)
	return &contacts.Store{DB: db, Tenant: t}
}
