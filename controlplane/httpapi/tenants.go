package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/laracopilot/controlplane/controlplane"
)

// createdTenant is the body of POST /api/tenants: the tenant, and its first
// API key with the secret, shown this once (null in a retry's answer).
type createdTenant struct {
	*controlplane.Tenant
	APIKey *controlplane.NewAPIKey `json:"api_key"`
}

func (s *Server) tenantRoutes(api *gin.RouterGroup) {
	api.POST("/tenants", handle(s.createTenant))
	api.GET("/tenants", handle(s.listTenants))
	api.GET("/tenants/:id", handle(s.getTenant))
	api.PUT("/tenants/:id", handle(s.replaceTenant))
	api.PATCH("/tenants/:id", handle(s.patchTenant))
	api.DELETE("/tenants/:id", handle(s.deleteTenant))
	api.POST("/tenants/:id/provision", handle(s.provisionTenant))
	api.POST("/tenants/:id/undelete", handle(s.undeleteTenant))
	api.GET("/migrations/status", handle(s.migrationStatus))
	api.POST("/tenants/:id/keys", handle(s.createKey))
	api.GET("/tenants/:id/keys", handle(s.listKeys))
	api.DELETE("/tenants/:id/keys/:key_id", handle(s.revokeKey))
	api.GET("/audit", handle(s.listAudit))
}

// createTenant answers 201 with the tenant, or, when a retry with an
// Idempotency-Key finds it still being provisioned by the first request,
// 202 with the tenant as it is (provisioning "pending"; poll Location).
// The header is checked before the body is read: a bad key is refused
// whatever the body.
func (s *Server) createTenant(c *gin.Context) error {
	key, err := controlplane.ParseIdempotencyKey(c.Request.Header.Values(controlplane.IdempotencyKeyHeader))
	if err != nil {
		return err
	}
	spec := controlplane.NewTenantSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	res, err := s.Tenants.CreateIdempotent(c.Request.Context(), key, spec)
	if err != nil {
		if controlplane.Replayed(err) {
			c.Header("Idempotent-Replayed", "true")
		}
		return err
	}
	if res.Replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	status := http.StatusCreated
	if res.Tenant.Provisioning == controlplane.ProvisionPending {
		status = http.StatusAccepted
	}
	c.Header("Location", "/api/tenants/"+itoa(res.Tenant.ID))
	c.JSON(status, createdTenant{Tenant: res.Tenant, APIKey: res.Key})
	return nil
}

func (s *Server) listTenants(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	f := controlplane.TenantFilter{Status: controlplane.Status(c.Query("status")), Server: c.Query("server"), Query: c.Query("q"), Limit: limit, Offset: offset}
	fields := controlplane.FieldErrors{}
	if _, ok := c.GetQuery("schema_version_lt"); ok {
		v := uint(max(0, queryInt(c, "schema_version_lt", fields)))
		f.SchemaVersionLT = &v
	}
	if d, ok := c.GetQuery("dirty"); ok {
		dirty, err := strconv.ParseBool(d)
		if err != nil {
			fields.Add("dirty", "must be true or false")
		}
		f.Dirty = &dirty
	}
	if err := fields.Err(); err != nil {
		return err
	}
	ts, total, err := s.Tenants.List(c.Request.Context(), f)
	return reply(c, http.StatusOK, page[controlplane.Tenant]{Data: ts, Total: total, Limit: f.Limit, Offset: f.Offset}, err)
}

func (s *Server) getTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	t, err := s.Tenants.Get(c.Request.Context(), id)
	return reply(c, http.StatusOK, t, err)
}

func (s *Server) replaceTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	spec := controlplane.NewTenantSpec()
	if err := decodeJSON(c, &spec); err != nil {
		return err
	}
	t, err := s.Tenants.Replace(c.Request.Context(), id, spec)
	return reply(c, http.StatusOK, t, err)
}

func (s *Server) patchTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var patch controlplane.TenantPatch
	if err := decodeJSON(c, &patch); err != nil {
		return err
	}
	t, err := s.Tenants.Patch(c.Request.Context(), id, patch)
	return reply(c, http.StatusOK, t, err)
}

// deleteTenant deletes with a grace period (200 with the deleted tenant),
// or with ?purge=now at once (204).
func (s *Server) deleteTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	switch purge, given := c.GetQuery("purge"); {
	case !given:
		t, err := s.Tenants.Delete(c.Request.Context(), id)
		return reply(c, http.StatusOK, t, err)
	case purge == "now":
		return noContent(c, s.Tenants.PurgeNow(c.Request.Context(), id))
	default:
		return controlplane.FieldError("purge", `must be "now" (or left out: delete with a grace period)`)
	}
}

func (s *Server) undeleteTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	t, err := s.Tenants.Undelete(c.Request.Context(), id)
	return reply(c, http.StatusOK, t, err)
}

func (s *Server) provisionTenant(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	t, err := s.Tenants.Retry(c.Request.Context(), id)
	return reply(c, http.StatusOK, t, err)
}

// FleetState counts ready tenants by schema version (catalog.Store).
type FleetState interface {
	SchemaVersions(ctx context.Context) (map[uint]int, int, error)
}

// migrationStatus is the body of GET /api/migrations/status.
type migrationStatus struct {
	Latest   uint           `json:"latest"`
	Versions map[string]int `json:"versions"` // schema version → ready tenants
	AtLatest int            `json:"at_latest"`
	Behind   int            `json:"behind"`
	Ahead    int            `json:"ahead"`
	Dirty    int            `json:"dirty"`
}

func (s *Server) migrationStatus(c *gin.Context) error {
	counts, dirty, err := s.Fleet.SchemaVersions(c.Request.Context())
	st := migrationStatus{Latest: s.LatestTenantSchema, Versions: map[string]int{}, Dirty: dirty}
	for v, n := range counts {
		st.Versions[strconv.FormatUint(uint64(v), 10)] = n
		switch {
		case v == s.LatestTenantSchema:
			st.AtLatest += n
		case v < s.LatestTenantSchema:
			st.Behind += n
		default:
			st.Ahead += n
		}
	}
	return reply(c, http.StatusOK, st, err)
}

func (s *Server) createKey(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var spec controlplane.KeySpec
	if c.Request.ContentLength != 0 { // the name is optional, so is the body
		if err := decodeJSON(c, &spec); err != nil {
			return err
		}
	}
	key, err := s.Tenants.CreateKey(c.Request.Context(), id, spec)
	return reply(c, http.StatusCreated, key, err)
}

// keyList is the body of GET /api/tenants/{id}/keys.
type keyList struct {
	Data []controlplane.APIKey `json:"data"`
}

func (s *Server) listKeys(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	keys, err := s.Tenants.ListKeys(c.Request.Context(), id)
	return reply(c, http.StatusOK, keyList{Data: keys}, err)
}

func (s *Server) revokeKey(c *gin.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	keyID, err := pathID(c, "key_id")
	if err != nil {
		return err
	}
	return noContent(c, s.Tenants.RevokeKey(c.Request.Context(), id, keyID))
}

// listAudit lists operator actions, newest first; ?tenant= takes an id.
func (s *Server) listAudit(c *gin.Context) error {
	limit, offset, err := pageParams(c)
	if err != nil {
		return err
	}
	f := controlplane.AuditFilter{Limit: limit, Offset: offset}
	if id, given, err := tenantQuery(c); err != nil {
		return err
	} else if given {
		f.TenantID = &id
	}
	entries, total, err := s.Tenants.Audit(c.Request.Context(), f)
	return reply(c, http.StatusOK, page[controlplane.AuditEntry]{Data: entries, Total: total, Limit: limit, Offset: offset}, err)
}

// tenantQuery reads the optional ?tenant=ID filter.
func tenantQuery(c *gin.Context) (id int64, given bool, err error) {
	v, given := c.GetQuery("tenant")
	if !given {
		return 0, false, nil
	}
	id, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil || id < 1 {
		return 0, true, controlplane.FieldError("tenant", "must be a tenant id")
	}
	return id, true, nil
}
