package console

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/laracopilot/controlplane/controlplane"
)

// tenantsPerPage is the tenants table's page size.
const tenantsPerPage = 25

// listLimit is how many operations, audit entries and dirty tenants a
// page shows: the newest; the API and the CLI page through the rest.
const listLimit = 50

// serverRow is one tenant server on the overview.
type serverRow struct {
	controlplane.Server
	Total int      // tenants in every provisioning state: what capacity counts
	Pool  *PoolUse // this replica's connections to it (nil: none open)
}

type stateRow struct {
	Status       controlplane.Status
	Provisioning controlplane.ProvisionState
	Count        int
}

type versionRow struct {
	Version uint
	Count   int
	Latest  bool
}

type overviewView struct {
	Servers  []serverRow
	States   []stateRow
	Tenants  int
	Summary  controlplane.FleetSummary
	Latest   uint
	Versions []versionRow
}

// overview is the fleet at a glance: servers with their fill and this
// replica's connections, tenants by state, schema versions. The counts
// come from the in-memory catalog (as /metrics), the servers from the
// registry (as GET /api/servers).
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.Servers.List(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	var pools map[string]PoolUse
	if c.Pools != nil {
		pools = c.Pools()
	}
	v := overviewView{Latest: c.Latest}
	for _, srv := range list {
		row := serverRow{Server: srv}
		for _, n := range srv.Tenants {
			row.Total += n
		}
		if p, ok := pools[srv.Name]; ok {
			row.Pool = &p
		}
		v.Servers = append(v.Servers, row)
	}
	all, versions := c.fleet()
	states := map[[2]string]int{}
	for _, t := range all {
		states[[2]string{string(t.Status), string(t.Provisioning)}]++
	}
	v.Tenants = len(all)
	v.Summary = controlplane.Summarize(all, c.Latest)
	for k, n := range states {
		v.States = append(v.States, stateRow{Status: controlplane.Status(k[0]), Provisioning: controlplane.ProvisionState(k[1]), Count: n})
	}
	slices.SortFunc(v.States, func(a, b stateRow) int {
		return cmp.Or(cmp.Compare(a.Status, b.Status), cmp.Compare(a.Provisioning, b.Provisioning))
	})
	v.Versions = versions
	c.render(w, http.StatusOK, "overview", c.page(s, "Fleet overview", "overview", v))
}

// fleet is every tenant of the in-memory catalog, and the schema versions
// of those that serve (ready, not deleted), as rows.
func (c *Console) fleet() (all []*controlplane.Tenant, versions []versionRow) {
	counts := map[uint]int{}
	c.Fleet.Each(func(t *controlplane.Tenant) {
		all = append(all, t)
		if t.Provisioning == controlplane.ProvisionReady && t.Status != controlplane.StatusDeleted {
			counts[t.SchemaVersion]++
		}
	})
	return all, versionRows(counts, c.Latest)
}

func versionRows(counts map[uint]int, latest uint) []versionRow {
	out := make([]versionRow, 0, len(counts))
	for ver, n := range counts {
		out = append(out, versionRow{Version: ver, Count: n, Latest: ver == latest})
	}
	slices.SortFunc(out, func(a, b versionRow) int { return cmp.Compare(b.Version, a.Version) })
	return out
}

type tenantsView struct {
	Tenants          []controlplane.Tenant
	Total            int
	Q, Status        string
	Server           string
	Servers          []string
	Statuses         []controlplane.Status
	Page, Pages      int
	First, Last      int
	PrevURL, NextURL string
}

// tenantList is the tenants table: the API's list (Tenants.List) with its
// search (slug, name or domain) and filters, a page at a time. Bad
// parameters get a 400 page naming the field, as the API does.
func (c *Console) tenantList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	v := tenantsView{Q: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Server: q.Get("server"), Page: 1,
		Statuses: []controlplane.Status{controlplane.StatusActive, controlplane.StatusSuspended, controlplane.StatusDeleted}}
	fields := controlplane.FieldErrors{}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1_000_000 {
			fields.Add("page", "must be a page number from 1")
		}
		v.Page = n
	}
	if err := fields.Err(); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	ts, total, err := c.Tenants.List(r.Context(), controlplane.TenantFilter{Status: controlplane.Status(v.Status), Server: v.Server, Query: v.Q,
		Limit: tenantsPerPage, Offset: (v.Page - 1) * tenantsPerPage})
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	servers, err := c.Servers.List(r.Context())
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	for _, srv := range servers {
		v.Servers = append(v.Servers, srv.Name)
	}
	v.Tenants, v.Total = ts, total
	v.Pages = max(1, (total+tenantsPerPage-1)/tenantsPerPage)
	if len(ts) > 0 {
		v.First = (v.Page-1)*tenantsPerPage + 1
		v.Last = v.First + len(ts) - 1
	}
	pageURL := func(n int) string {
		u := url.Values{}
		for k, val := range map[string]string{"q": v.Q, "status": v.Status, "server": v.Server} {
			if val != "" {
				u.Set(k, val)
			}
		}
		u.Set("page", strconv.Itoa(n))
		return Prefix + "/tenants?" + u.Encode()
	}
	if v.Page > 1 {
		v.PrevURL = pageURL(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.NextURL = pageURL(v.Page + 1)
	}
	c.render(w, http.StatusOK, "tenants", c.page(s, "Tenants", "tenants", v))
}

type tenantView struct {
	Tenant      *controlplane.Tenant
	Server      *controlplane.Server
	Keys        []controlplane.APIKey
	Audit       []controlplane.AuditEntry
	AuditTotal  int
	Ops         opsView
	Backups     []controlplane.Backup
	MoveTargets []string
	Done        string
}

// done are the notices an action's redirect may ask the tenant page for.
var done = map[string]string{
	"suspend": "The tenant is suspended: its API and routes answer 403 until it is resumed.",
	"resume":  "The tenant is active again.",
	"backup":  "A backup has started; its progress shows under Operations.",
	"move":    "A move has started; its progress shows under Operations.",
}

// tenantPage shows one tenant: its settings, its server, its keys (by
// prefix: the catalog keeps no secret to show), its recent audit
// entries, operations and backups, and the actions.
func (c *Console) tenantPage(w http.ResponseWriter, r *http.Request, s *session) {
	id, ok := c.pathID(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	t, err := c.Tenants.Get(ctx, id)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	v := tenantView{Tenant: t, Done: done[r.URL.Query().Get("done")]}
	servers, err := c.Servers.List(ctx)
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	for i := range servers {
		switch {
		case servers[i].Name == t.ServerName():
			v.Server = &servers[i]
		case servers[i].Status == controlplane.ServerActive:
			v.MoveTargets = append(v.MoveTargets, servers[i].Name)
		}
	}
	if v.Keys, err = c.Tenants.ListKeys(ctx, id); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if v.Audit, v.AuditTotal, err = c.Tenants.Audit(ctx, controlplane.AuditFilter{TenantID: &id, Limit: 20}); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if v.Ops, err = c.ops(r, id); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if v.Backups, err = c.Operations.Store.Backups(ctx, id); err != nil {
		c.failErr(w, r, s, err)
		return
	}
	if len(v.Backups) > 20 {
		v.Backups = v.Backups[:20]
	}
	c.render(w, http.StatusOK, "tenant", c.page(s, "Tenant "+t.Slug, "tenants", v))
}

// tenantAction runs an action on a tenant through the service the API's
// route for it calls, with the session's actor in the context (set by
// session()), so the audit trail names the operator through the console.
// It answers with a redirect to the tenant page (so a reload does not
// repeat it), or with the error page and the API's status for the error.
func (c *Console) tenantAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, ok := c.pathID(w, r, s)
	if !ok {
		return
	}
	ctx := r.Context()
	action := r.PathValue("action")
	var err error
	switch action {
	case "suspend", "resume":
		// PATCH /api/tenants/{id} {"status": ...}
		status := controlplane.StatusSuspended
		if action == "resume" {
			status = controlplane.StatusActive
		}
		_, err = c.Tenants.Patch(ctx, id, controlplane.TenantPatch{Status: &status})
	case "backup":
		// POST /api/tenants/{id}/backups
		_, err = c.Operations.StartBackup(ctx, id)
	case "move":
		// POST /api/tenants/{id}/move
		spec := controlplane.MoveSpec{Server: r.PostFormValue("server"), Mode: controlplane.MoveMode(r.PostFormValue("mode"))}
		_, err = c.Operations.StartMove(ctx, id, spec)
	default:
		c.fail(w, r, s, http.StatusNotFound, "There is no action "+strconv.Quote(action)+": the actions are suspend, resume, backup and move.", nil)
		return
	}
	if err != nil {
		c.failErr(w, r, s, err)
		return
	}
	c.Log.Info("console: action", "actor", s.actor, "action", action, "tenant_id", id)
	http.Redirect(w, r, Prefix+"/tenants/"+strconv.FormatInt(id, 10)+"?done="+action, http.StatusSeeOther)
}

// pathID reads {id}, answering 400 naming the field when it is not one.
func (c *Console) pathID(w http.ResponseWriter, r *http.Request, s *session) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		c.failErr(w, r, s, controlplane.FieldError("id", "must be a tenant id (a positive number)"))
		return 0, false
	}
	return id, true
}

// opRow is one operation with its tenant's slug.
type opRow struct {
	controlplane.Operation
	Slug string
}

// opsView is an operations table: the newest operations, and whether one
// still runs (then the table polls itself for fresh progress).
type opsView struct {
	Rows    []opRow
	Running bool
	// Tenant is the tenant the table is limited to (0: all).
	Tenant int64
}

// PollURL is where the table's htmx poll fetches its rows.
func (v opsView) PollURL() string {
	u := Prefix + "/operations/rows"
	if v.Tenant != 0 {
		u += "?tenant=" + strconv.FormatInt(v.Tenant, 10)
	}
	return u
}

// ops reads the newest operations (of tenant, if not 0), as GET
// /api/operations does.
func (c *Console) ops(r *http.Request, tenant int64) (opsView, error) {
	list, err := c.Operations.Store.Operations(r.Context(), controlplane.OperationFilter{TenantID: tenant, Limit: listLimit})
	if err != nil {
		return opsView{}, err
	}
	v := opsView{Tenant: tenant}
	for _, op := range list {
		row := opRow{Operation: op}
		if t, ok := c.Fleet.ByID(op.TenantID); ok {
			row.Slug = t.Slug
		}
		v.Running = v.Running || op.State == controlplane.OperationRunning
		v.Rows = append(v.Rows, row)
	}
	return v, nil
}

// tenantFilter reads the optional ?tenant=ID.
func tenantFilter(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("tenant")
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, controlplane.FieldError("tenant", "must be a tenant id")
	}
	return id, nil
}

// operations serves every tenant's newest operations (or one tenant's,
// ?tenant=ID), with live progress: whole, the operations page; !whole, the
// table's body alone, for its poll (htmx, every 2 s, while one runs). A
// body without running operations carries no poll trigger, so polling
// stops by itself once everything has ended.
func (c *Console) operations(whole bool) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		tenant, err := tenantFilter(r)
		if err != nil {
			c.failErr(w, r, s, err)
			return
		}
		v, err := c.ops(r, tenant)
		if err != nil {
			c.failErr(w, r, s, err)
			return
		}
		if whole {
			c.render(w, http.StatusOK, "operations", c.page(s, "Operations", "operations", v))
			return
		}
		c.render(w, http.StatusOK, "operations_rows", v)
	}
}

// problemRow is a tenant a migration left in need of an operator.
type problemRow struct {
	Tenant *controlplane.Tenant
	State  string // dirty, failed
	Repair string // the exact commands (controlplane.RepairAdvice)
}

type migrationsView struct {
	Latest   uint
	Summary  controlplane.FleetSummary
	Versions []versionRow
	ByServer []serverSummary
	Problems []problemRow
	More     int // problems beyond listLimit
}

type serverSummary struct {
	Server  string
	Summary controlplane.FleetSummary
}

// migrations is where the tenants' schemas stand, classified as `migrate
// tenants status` classifies them (controlplane.Summarize), with the
// repair commands of each dirty tenant (controlplane.RepairAdvice, the
// CLI's own) and of a failed one.
func (c *Console) migrations(w http.ResponseWriter, r *http.Request, s *session) {
	all, versions := c.fleet()
	v := migrationsView{Latest: c.Latest, Versions: versions, Summary: controlplane.Summarize(all, c.Latest)}
	for name, sum := range controlplane.SummarizeByServer(all, c.Latest) {
		v.ByServer = append(v.ByServer, serverSummary{Server: name, Summary: sum})
	}
	slices.SortFunc(v.ByServer, func(a, b serverSummary) int { return cmp.Compare(a.Server, b.Server) })
	controlplane.SortBySlug(all)
	for _, t := range all {
		if t.Provisioning != controlplane.ProvisionReady {
			continue
		}
		var p problemRow
		switch {
		case t.SchemaDirty:
			p = problemRow{Tenant: t, State: "dirty", Repair: controlplane.RepairAdvice(t, c.Versions)}
		case t.MigrationError != "":
			p = problemRow{Tenant: t, State: "failed", Repair: controlplane.RetryCommand(t.Slug)}
		default:
			continue
		}
		if len(v.Problems) == listLimit {
			v.More++
			continue
		}
		v.Problems = append(v.Problems, p)
	}
	c.render(w, http.StatusOK, "migrations", c.page(s, "Migrations", "migrations", v))
}
