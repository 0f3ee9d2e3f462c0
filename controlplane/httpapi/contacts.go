package httpapi

import (
	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/contacts"
)

// contactRoutes are tenant routes. The list searches (?q=) and looks up
// caller ID (?phone=+15551234567).
func (s *Server) contactRoutes(api tenantAPI) {
	resource[contacts.Contact, contacts.Spec, contacts.Patch]{
		path:  "/contacts",
		store: func(in tenantScope) items[contacts.Contact, contacts.Spec, contacts.Patch] { return contactStore(in) },
		spec:  func() contacts.Spec { return contacts.Spec{} },
		id:    func(ct *contacts.Contact) int64 { return ct.ID },
		list: func(c *gin.Context, in tenantScope, limit, offset int) ([]contacts.Contact, int, error) {
			f := contacts.Filter{Query: c.Query("q"), Phone: c.Query("phone"), Limit: limit, Offset: offset}
			return contactStore(in).List(c.Request.Context(), f)
		},
	}.routes(api)
}

func contactStore(in tenantScope) *contacts.Store {
	return &contacts.Store{DB: in.DB, Tenant: in.Tenant}
}
