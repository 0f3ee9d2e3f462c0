package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// api is a client of one serve process, in development mode (no
// credentials: serve listens on loopback without ADMIN_TOKEN).
type api struct {
	base   string
	client *http.Client
}

func newAPI(p *proc) *api { return &api{base: p.base, client: newClient(8)} }

// do sends one request (host "" is the operator API) and decodes a JSON
// answer of status want into out.
func (a *api) do(ctx context.Context, method, host, path string, body, out any, want int) error {
	var rd io.Reader
	if b, ok := body.([]byte); ok {
		rd = bytes.NewReader(b)
	} else if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s (Host %q): HTTP %d, want %d: %s", method, path, host, resp.StatusCode, want, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// tenant is what the harness needs of a tenant.
type tenant struct {
	ID            int64           `json:"id"`
	Name          string          `json:"name"`
	Slug          string          `json:"slug"`
	Domain        string          `json:"domain"`
	Status        string          `json:"status"`
	Timezone      string          `json:"timezone"`
	MaxExtensions int             `json:"max_extensions"`
	Settings      json.RawMessage `json:"settings"`
	Isolation     string          `json:"isolation"`
	DBName        string          `json:"db_name"`
	Provisioning  string          `json:"provisioning"`
	SchemaVersion uint            `json:"schema_version"`
	// Server is the tenant server its database lives on (benchmark 7).
	Server string `json:"server"`
}

// tenantSpec names tenant i of a group: slug tag-i, domain tag-i.RUN.bench.test.
func (e *env) tenantSpec(tag string, i int, isolation string) map[string]any {
	slug := fmt.Sprintf("%s-%d", tag, i)
	return map[string]any{"name": "Bench " + slug, "slug": slug, "domain": slug + "." + e.pg.run + ".bench.test", "isolation": isolation}
}

// createTenant creates and provisions a tenant through the API.
func (a *api) createTenant(ctx context.Context, spec map[string]any) (tenant, error) {
	var t tenant
	err := a.do(ctx, http.MethodPost, "", "/api/tenants", spec, &t, http.StatusCreated)
	return t, err
}

// createTenants creates n tenants through the API with parallel creators,
// where creating them is not what is measured.
func (e *env) createTenants(ctx context.Context, a *api, tag, isolation string, from, n, parallel int) ([]tenant, error) {
	out := make([]tenant, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i := range n {
		g.Go(func() error {
			t, err := a.createTenant(gctx, e.tenantSpec(tag, from+i, isolation))
			out[i] = t
			return err
		})
	}
	return out, g.Wait()
}

// extensionsSQL inserts n extensions numbered 1001.. into table, as POST
// /api/extensions would store them without a password (ids 1..n).
// extensionsSQL inserts n extensions into table, each named after its
// tenant (owner, the tenant's database or schema), so that a read returning
// another tenant's row is seen (benchmark 6, through PgBouncer).
func extensionsSQL(table string, n int, owner string) string {
	return fmt.Sprintf(`INSERT INTO %s (number, name, enabled, created_at, updated_at)
		SELECT (1000 + g)::text, 'Extension ' || g || ' of ' || %s, true, now(), now() FROM generate_series(1, %d) g`, table, literal(owner), n)
}

// seedExtensions gives every tenant n extensions, with SQL (24,000 POSTs
// would take longer than the benchmark they feed; the rows are the same).
func (e *env) seedExtensions(ctx context.Context, tenantDB string, ts []tenant, n int) error {
	var schemas, dbs []tenant
	for _, t := range ts {
		if t.Isolation == "schema" {
			schemas = append(schemas, t)
		} else {
			dbs = append(dbs, t)
		}
	}
	if len(schemas) > 0 {
		conn, err := e.pg.connect(ctx, tenantDB)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		for i := 0; i < len(schemas); i += 200 {
			var sb strings.Builder
			for _, t := range schemas[i:min(i+200, len(schemas))] {
				sb.WriteString(extensionsSQL(ident(t.DBName)+".extensions", n, t.DBName) + ";\n")
			}
			if _, err := conn.PgConn().Exec(ctx, sb.String()).ReadAll(); err != nil {
				return err
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, t := range dbs {
		g.Go(func() error {
			conn, err := e.pg.connect(gctx, t.DBName)
			if err != nil {
				return err
			}
			defer conn.Close(gctx)
			_, err = conn.Exec(gctx, extensionsSQL("extensions", n, t.DBName))
			return err
		})
	}
	return g.Wait()
}

// bulkSchemaTenants creates n schema-mode tenants fast, with SQL that does
// exactly what provisioning through the API leaves behind, copied from
// exemplar (a tenant that was created through the API in the same
// catalog):
//
//   - per tenant, in one round trip and one transaction: the schema, its
//     mark (the COMMENT the provisioner checks), every tenant migration
//     run with the schema as search_path, golang-migrate's migrations
//     table in the schema at the latest version, not dirty, and the
//     extensions;
//   - in the catalog, per 1,000 tenants: the rows, copied from the
//     exemplar's for every field but id, name, slug, domain and db_name
//     (same provisioning state, schema version, settings...), its audit
//     entries and its API keys (each with a fresh random key).
//
// The result is checked against the exemplar (relations, constraints,
// migrations table, catalog fields) by verifyLike, so a change of the
// provisioner that this copy misses fails the run instead of measuring
// something else.
func (e *env) bulkSchemaTenants(ctx context.Context, catalogDB, tenantDB string, ex tenant, tag string, from, n, extensions int) ([]tenant, error) {
	cat, err := e.pg.connect(ctx, catalogDB)
	if err != nil {
		return nil, err
	}
	defer cat.Close(ctx)
	var identity string
	if err := cat.QueryRow(ctx, `SELECT id::text FROM catalog_identity`).Scan(&identity); err != nil {
		return nil, err
	}
	ten, err := e.pg.connect(ctx, tenantDB)
	if err != nil {
		return nil, err
	}
	var exMark string
	err = ten.QueryRow(ctx, `SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`, ex.DBName).Scan(&exMark)
	ten.Close(ctx)
	if err != nil {
		return nil, err
	}
	if want := mark(ex.ID, identity); exMark != want {
		return nil, fmt.Errorf("the provisioner's mark changed (%q, the harness makes %q): update bench/tenants.go", exMark, want)
	}
	prefix := strings.TrimSuffix(ex.DBName, fmt.Sprint(ex.ID))
	rows, err := cat.Query(ctx, `SELECT nextval(pg_get_serial_sequence('tenants', 'id')) FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	ts := make([]tenant, n)
	for i, id := range ids {
		spec := e.tenantSpec(tag, from+i, "schema")
		ts[i] = ex
		ts[i].ID, ts[i].DBName = id, fmt.Sprintf("%s%d", prefix, id)
		ts[i].Name, ts[i].Slug, ts[i].Domain = spec["name"].(string), spec["slug"].(string), spec["domain"].(string)
	}

	// Schemas first, in parallel (the DDL is server CPU: a few workers fill
	// the cores), then the catalog rows that make them routable.
	var ddl strings.Builder
	for _, m := range e.mig {
		ddl.WriteString(m.up + "\n;\n")
	}
	pool, err := e.pg.pool(ctx, tenantDB, 4)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	last := time.Now()
	var progress sync.Mutex
	for i := range ts {
		t := ts[i]
		g.Go(func() error {
			s := ident(t.DBName)
			sql := "BEGIN;\n" +
				"CREATE SCHEMA " + s + ";\n" +
				"COMMENT ON SCHEMA " + s + " IS " + literal(mark(t.ID, identity)) + ";\n" +
				"SET LOCAL search_path TO " + s + ";\n" +
				ddl.String() +
				"CREATE TABLE " + s + ".schema_migrations (version bigint not null primary key, dirty boolean not null);\n" +
				fmt.Sprintf("INSERT INTO %s.schema_migrations (version, dirty) VALUES (%d, false);\n", s, e.base) +
				extensionsSQL(s+".extensions", extensions, t.DBName) + ";\nCOMMIT;"
			c, err := pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer c.Release()
			if _, err := c.Conn().PgConn().Exec(gctx, sql).ReadAll(); err != nil {
				return fmt.Errorf("create schema %s: %w", t.DBName, err)
			}
			progress.Lock()
			if time.Since(last) > 15*time.Second {
				last = time.Now()
				e.logf("  ... schema %s created", t.DBName)
			}
			progress.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	for i := 0; i < n; i += 1000 {
		batch := ts[i:min(i+1000, n)]
		var bids []int64
		var names, slugs, domains []string
		for _, t := range batch {
			bids = append(bids, t.ID)
			names, slugs, domains = append(names, t.Name), append(slugs, t.Slug), append(domains, t.Domain)
		}
		tx, err := cat.Begin(ctx)
		if err != nil {
			return nil, err
		}
		// unnest($1..$4) is the batch: id, name, slug, domain.
		const batchRows = `unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, name, slug, domain)`
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO tenants (id, name, slug, domain, status, timezone, max_extensions, settings, isolation, db_name,
				provisioning, schema_version, last_error, schema_dirty, migrated_at, migration_error)
			SELECT u.id, u.name, u.slug, u.domain, x.status, x.timezone, x.max_extensions, x.settings, x.isolation, $6 || u.id,
				x.provisioning, x.schema_version, x.last_error, x.schema_dirty, now(), x.migration_error
			FROM ` + batchRows + `, tenants x WHERE x.id = $5`, []any{prefix}},
			{`INSERT INTO audit_log (at, actor, action, tenant_id, target, diff)
			SELECT now(), a.actor, a.action, u.id, replace(a.target, x.slug, u.slug),
				replace(replace(replace(a.diff::text, x.domain, u.domain), x.slug, u.slug), x.name, u.name)::jsonb
			FROM ` + batchRows + `, audit_log a, tenants x
			WHERE a.tenant_id = $5 AND x.id = $5 ORDER BY u.id, a.id`, nil},
			{`WITH k AS (
				SELECT u.id, k.name, 'lc_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '') AS key
				FROM ` + batchRows + `, tenant_api_keys k WHERE k.tenant_id = $5)
			INSERT INTO tenant_api_keys (tenant_id, name, prefix, hash)
			SELECT id, name, left(key, 11), sha256(convert_to(key, 'UTF8')) FROM k`, nil},
		} {
			args := append([]any{bids, names, slugs, domains, ex.ID}, q.args...)
			if _, err := tx.Exec(ctx, q.sql, args...); err != nil {
				_ = tx.Rollback(ctx)
				return nil, fmt.Errorf("catalog rows: %w", err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// mark is the COMMENT the provisioner puts on a tenant's schema or
// database (tenantdb/provision.go).
func mark(id int64, identity string) string {
	return fmt.Sprintf("laracopilot tenant %d of catalog %s", id, identity)
}

// verifyLike checks that bulk-created tenant t is indistinguishable from
// exemplar ex, both as the server reports them and inside the tenant
// database: the same catalog fields, the same relations and constraints,
// the same migrations table, and t routes (GET /api/extensions/1).
func (e *env) verifyLike(ctx context.Context, a *api, tenantDB string, ex, t tenant) error {
	var got, want tenant
	if err := a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/tenants/%d", ex.ID), nil, &want, http.StatusOK); err != nil {
		return err
	}
	if err := a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/tenants/%d", t.ID), nil, &got, http.StatusOK); err != nil {
		return err
	}
	got.ID, got.Name, got.Slug, got.Domain, got.DBName = want.ID, want.Name, want.Slug, want.Domain, want.DBName
	if gb, wb := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); gb != wb {
		return fmt.Errorf("bulk-created tenant %d differs from the API-created %d:\n got %s\nwant %s", t.ID, ex.ID, gb, wb)
	}
	conn, err := e.pg.connect(ctx, tenantDB)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	shape := func(schema string) (string, error) {
		var s string
		err := conn.QueryRow(ctx, `SELECT
			(SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = $1::regnamespace) || ' | ' ||
			(SELECT string_agg(conname || ':' || contype::text, ',' ORDER BY conname) FROM pg_constraint WHERE connamespace = $1::regnamespace)`,
			schema).Scan(&s)
		if err != nil {
			return "", err
		}
		var v int64
		var dirty bool
		if err := conn.QueryRow(ctx, `SELECT version, dirty FROM `+ident(schema)+`.schema_migrations`).Scan(&v, &dirty); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s | version %d dirty %t", s, v, dirty), nil
	}
	ws, err := shape(ex.DBName)
	if err != nil {
		return err
	}
	gs, err := shape(t.DBName)
	if err != nil {
		return err
	}
	if ws != gs {
		return fmt.Errorf("schema %s differs from the API-created %s:\n got %s\nwant %s", t.DBName, ex.DBName, gs, ws)
	}
	return a.do(ctx, http.MethodGet, t.Domain, "/api/extensions/1", nil, nil, http.StatusOK)
}

// domains returns the tenants' domains (the Host headers of the load).
func domains(ts []tenant) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Domain
	}
	return out
}
