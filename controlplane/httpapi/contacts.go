package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/tenantdb/contacts"
)

// contactList is the body of GET /api/contacts.
type contactList struct {
	Data   []contacts.Contact `json:"data"`
	Total  int                `json:"total"`
	Limit  int                `json:"limit"`
	Offset int                `json:"offset"`
}

func (s *Server) contactRoutes(api *gin.RouterGroup) {
	api.POST("/contacts", handle(createContact))
	api.GET("/contacts", handle(listContacts))
	api.GET("/contacts/:id", handle(getContact))
	api.PUT("/contacts/:id", handle(replaceContact))
	api.PATCH("/contacts/:id", handle(patchContact))
	api.DELETE("/contacts/:id", handle(deleteContact))
}

func contactStore(c *gin.Context) *contacts.Store {
	t, db := tenantDB(c)
	return &contacts.Store{DB: db, Tenant: t}
}

func createContact(c *gin.Context) error {
	var spec contacts.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	ct, err := contactStore(c).Create(c.Request.Context(), spec)
	if err == nil {
		c.Header("Location", "/api/contacts/"+itoa(ct.ID))
	}
	return reply(c, http.StatusCreated, ct, err)
}

// listContacts searches (?q=) and looks up caller ID (?phone=+1555...).
func listContacts(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	f := contacts.Filter{Query: c.Query("q"), Phone: c.Query("phone"), Limit: limit, Offset: offset}
	list, total, err := contactStore(c).List(c.Request.Context(), f)
	return reply(c, http.StatusOK, contactList{Data: list, Total: total, Limit: limit, Offset: offset}, err)
}

func getContact(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ct, err := contactStore(c).Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, ct, err)
}

func replaceContact(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var spec contacts.Spec
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	ct, err := contactStore(c).Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, ct, err)
}

func patchContact(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var p contacts.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	ct, err := contactStore(c).Patch(c.Request.Context(), id, p)
	return reply(c, http.StatusOK, ct, err)
}

func deleteContact(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	return noContent(c, contactStore(c).Delete(c.Request.Context(), id))
}
