package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// migrateCLI is the golang-migrate CLI an operator would otherwise loop
// over: the version the product's go.mod pins.
const migrateCLI = "github.com/golang-migrate/migrate/v4/cmd/migrate@v4.20.1"

// fleetRun is one contender of benchmark 3.
type fleetRun struct {
	Name             string
	Took             time.Duration
	Schema, Database time.Duration // time spent on each mode's tenants
	Stmts            stmtStats
	StmtsOK          bool
}

// fleet is benchmark 3: one new migration applied to every tenant of the
// reads fleet by `controlplane migrate tenants up --all`, against a shell
// loop running the golang-migrate CLI per tenant, and against the raw
// floor: the same DDL and the version bump as plain SQL over as many
// connections as the migrator runs workers. Each contender applies a
// migration of its own (the same ALTER TABLE ... ADD COLUMN, another
// column), one after the other, on the same tenants.
func (e *env) fleet(ctx context.Context, rs *readsSetup) (*Section, error) {
	rs.serve.stop()
	conc := e.sz.FleetConcurrency
	all := len(rs.schema) + len(rs.db)
	var runs []*fleetRun

	// Every tenant's database and tables are read once first, so that no
	// contender pays for a cold cache the next one finds warm.
	if err := e.checkVersions(ctx, rs, e.base); err != nil {
		return nil, err
	}

	// The product.
	e.logf("fleet: controlplane migrate tenants up --all --concurrency %d over %d tenants", conc, all)
	prod := &fleetRun{Name: fmt.Sprintf("`controlplane migrate tenants up --all --concurrency %d`", conc)}
	var out []byte
	var err error
	prod.Stmts, prod.StmtsOK, err = e.pg.statements(ctx, func() error {
		var err error
		out, prod.Took, err = runCmd(ctx, e.bin.fleet, []string{"migrate", "tenants", "up", "--all", "--concurrency", strconv.Itoa(conc), "--json"}, e.serveEnv(rs.opts))
		return err
	})
	if err != nil {
		return nil, err
	}
	migrated, bySchema, byDB, err := parseFleetJSON(out)
	if err != nil {
		return nil, err
	}
	if migrated != all {
		return nil, fmt.Errorf("the fleet run migrated %d tenants, want %d", migrated, all)
	}
	prod.Schema, prod.Database = bySchema, byDB
	runs = append(runs, prod)
	if err := e.checkVersions(ctx, rs, e.base+1); err != nil {
		return nil, err
	}

	// The operator's loop.
	if e.sz.FleetLoop {
		loop, err := e.fleetLoop(ctx, rs)
		if err != nil {
			return nil, err
		}
		runs = append(runs, loop)
	}

	// The floor.
	floorVersion := e.base + 2
	if e.sz.FleetLoop {
		floorVersion = e.base + 3
	}
	floor, err := e.fleetFloor(ctx, rs, conc, floorVersion)
	if err != nil {
		return nil, err
	}
	runs = append(runs, floor)
	return e.fleetSection(runs, all, len(rs.schema), len(rs.db), conc), nil
}

// parseFleetJSON reads `migrate tenants up --json`: one object per tenant,
// then a summary. It returns how many were migrated and the sum of the
// per-tenant durations by isolation mode.
func parseFleetJSON(out []byte) (migrated int, schema, database time.Duration, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var line struct {
			Tenant     string  `json:"tenant"`
			Isolation  string  `json:"isolation"`
			DurationMS float64 `json:"duration_ms"`
			Error      *string `json:"error"`
			Failed     *int    `json:"failed"`
			Summary    string  `json:"summary"`
			Migrated   *int    `json:"migrated"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return 0, 0, 0, fmt.Errorf("migrate tenants --json: %w: %s", err, sc.Text())
		}
		switch {
		case line.Summary != "":
			if line.Failed != nil && *line.Failed > 0 {
				return 0, 0, 0, fmt.Errorf("migrate tenants: %s", line.Summary)
			}
			if line.Migrated != nil {
				migrated = *line.Migrated
			}
		case line.Error != nil:
			return 0, 0, 0, fmt.Errorf("migrate tenants: %s: %s", line.Tenant, *line.Error)
		default:
			d := time.Duration(line.DurationMS * float64(time.Millisecond))
			if line.Isolation == "schema" {
				schema += d
			} else {
				database += d
			}
		}
	}
	return migrated, schema, database, sc.Err()
}

// checkVersions checks that every tenant's own migrations table is at v.
func (e *env) checkVersions(ctx context.Context, rs *readsSetup, v uint) error {
	conn, err := e.pg.connect(ctx, rs.tenantDB)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var parts []string
	for _, t := range rs.schema {
		parts = append(parts, "SELECT version, dirty FROM "+ident(t.DBName)+".schema_migrations")
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (`+strings.Join(parts, " UNION ALL ")+`) v WHERE version = $1 AND NOT dirty`, int64(v)).Scan(&n); err != nil {
		return err
	}
	if n != len(rs.schema) {
		return fmt.Errorf("%d of %d schema tenants at version %d", n, len(rs.schema), v)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, t := range rs.db {
		g.Go(func() error {
			c, err := e.pg.connect(gctx, t.DBName)
			if err != nil {
				return err
			}
			defer c.Close(gctx)
			var got int64
			var dirty bool
			if err := c.QueryRow(gctx, `SELECT version, dirty FROM schema_migrations`).Scan(&got, &dirty); err != nil {
				return err
			}
			if got != int64(v) || dirty {
				return fmt.Errorf("tenant database %s at version %d (dirty %t), want %d", t.DBName, got, dirty, v)
			}
			return nil
		})
	}
	return g.Wait()
}

// loopScript is what an operator writes without a fleet migrator: the
// golang-migrate CLI once per tenant, one tenant after another.
const loopScript = `#!/usr/bin/env bash
# usage: loop.sh MIGRATE_BIN MIGRATIONS_DIR URL_LIST
set -euo pipefail
migrate=$1 dir=$2 list=$3
while IFS= read -r url; do
	"$migrate" -path "$dir" -database "$url" up 2>/dev/null || { echo "migrate failed for a tenant" >&2; exit 1; }
done < "$list"
`

// fleetLoop installs the golang-migrate CLI (go install, with the postgres
// driver) and runs the loop over the schema tenants, then the database
// tenants, applying migration base+2.
func (e *env) fleetLoop(ctx context.Context, rs *readsSetup) (*fleetRun, error) {
	gobin := filepath.Join(e.work, "gobin")
	e.logf("fleet: go install -tags postgres %s", migrateCLI)
	if _, _, err := runCmd(ctx, "go", []string{"install", "-tags", "postgres", migrateCLI}, map[string]string{"GOBIN": gobin}); err != nil {
		return nil, err
	}
	dir := filepath.Join(e.work, "loop-migrations")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	v := e.base + 2
	ms := append(append(append([]migration{}, e.mig...), e.rolloutMigration()...), migration{
		version: v, name: fmt.Sprintf("%06d_bench_loop", v),
		up: "ALTER TABLE extensions ADD COLUMN bench_loop text;\n", down: "ALTER TABLE extensions DROP COLUMN bench_loop;\n",
	})
	for _, m := range ms {
		for dirn, body := range map[string]string{"up": m.up, "down": m.down} {
			if err := os.WriteFile(filepath.Join(dir, m.name+"."+dirn+".sql"), []byte(body), 0o644); err != nil {
				return nil, err
			}
		}
	}
	script := filepath.Join(e.work, "loop.sh")
	if err := os.WriteFile(script, []byte(loopScript), 0o755); err != nil {
		return nil, err
	}
	list := func(name string, urls []string) (string, error) {
		path := filepath.Join(e.work, name)
		return path, os.WriteFile(path, []byte(strings.Join(urls, "\n")+"\n"), 0o600)
	}
	var schemaURLs, dbURLs []string
	for _, t := range rs.schema {
		// The driver's documented way to a schema's own migrations table:
		// search_path, and the table quoted with its schema.
		schemaURLs = append(schemaURLs, e.pg.dbURL(rs.tenantDB, "search_path", t.DBName,
			"x-migrations-table", `"`+t.DBName+`"."schema_migrations"`, "x-migrations-table-quoted", "1"))
	}
	for _, t := range rs.db {
		dbURLs = append(dbURLs, e.pg.dbURL(t.DBName))
	}
	run := &fleetRun{Name: "shell loop of the golang-migrate CLI, one tenant at a time"}
	for _, part := range []struct {
		name string
		urls []string
		took *time.Duration
	}{{"schema-urls", schemaURLs, &run.Schema}, {"database-urls", dbURLs, &run.Database}} {
		if len(part.urls) == 0 {
			continue
		}
		path, err := list(part.name, part.urls)
		if err != nil {
			return nil, err
		}
		e.logf("fleet: golang-migrate loop over %d %s", len(part.urls), part.name)
		_, took, err := runCmd(ctx, "bash", []string{script, filepath.Join(gobin, "migrate"), dir, path}, nil)
		if err != nil {
			return nil, err
		}
		*part.took = took
		run.Took += took
	}
	return run, e.checkVersions(ctx, rs, v)
}

// fleetFloor applies migration v as plain SQL: per tenant one round trip
// holding the DDL and the version bump in one transaction, conc tenants
// at a time; schema tenants over conc pooled connections, database
// tenants over a connection opened to each (as the admin, who needs no
// SCRAM round trips: a floor).
func (e *env) fleetFloor(ctx context.Context, rs *readsSetup, conc int, v uint) (*fleetRun, error) {
	run := &fleetRun{Name: fmt.Sprintf("floor: DDL + version bump as plain SQL, %d connections", conc)}
	sql := func(schema string) string {
		q := ""
		if schema != "" {
			q = ident(schema) + "."
		}
		return fmt.Sprintf("BEGIN; ALTER TABLE %sextensions ADD COLUMN bench_floor text; UPDATE %sschema_migrations SET version = %d, dirty = false; COMMIT;", q, q, v)
	}
	pool, err := e.pg.pool(ctx, rs.tenantDB, int32(conc))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, err
	}
	e.logf("fleet: floor over %d tenants", len(rs.schema)+len(rs.db))
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, t := range rs.schema {
		g.Go(func() error {
			c, err := pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer c.Release()
			_, err = c.Conn().PgConn().Exec(gctx, sql(t.DBName)).ReadAll()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	run.Schema = time.Since(start)
	start = time.Now()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, t := range rs.db {
		g.Go(func() error {
			c, err := e.pg.connect(gctx, t.DBName)
			if err != nil {
				return err
			}
			defer c.Close(gctx)
			_, err = c.PgConn().Exec(gctx, sql("")).ReadAll()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	run.Database = time.Since(start)
	run.Took = run.Schema + run.Database
	return run, e.checkVersions(ctx, rs, v)
}

// fleetSection reports benchmark 3.
func (e *env) fleetSection(runs []*fleetRun, all, nSchema, nDB, conc int) *Section {
	s := &Section{Title: "3. Fleet migrations"}
	var b strings.Builder
	fmt.Fprintf(&b, "One new migration (`ALTER TABLE extensions ADD COLUMN ...`) applied to %d tenants (%d schema-mode, %d database-mode: the fleet of benchmark 1), "+
		"by each contender in turn, each with a migration of its own (same statement, another column). Wall time of the whole run, "+
		"process start and catalog load included.\n\n", all, nSchema, nDB)
	b.WriteString("- **Product**: a binary with one more tenant migration (`go build -overlay`), `migrate tenants up --all --concurrency " + strconv.Itoa(conc) + " --json`; it records every tenant's new version in the catalog.\n")
	b.WriteString("- **Loop**: a bash loop (`loopScript` in `bench/fleet.go`) running `migrate -path DIR -database URL up` per tenant, the CLI built with `go install -tags postgres " + migrateCLI + "`. " +
		"Schema mode: `...?search_path=<schema>&x-migrations-table=\"<schema>\".\"schema_migrations\"&x-migrations-table-quoted=1` (the driver's documented options); database mode: the tenant database, as the admin.\n")
	fmt.Fprintf(&b, "- **Floor**: per tenant one simple-protocol round trip `BEGIN; ALTER TABLE ...; UPDATE schema_migrations SET version = N, dirty = false; COMMIT`, %d at a time "+
		"(the migrator's --concurrency); schema tenants over %d pooled connections, database tenants over a fresh connection each.\n\n", conc, conc)
	var rows [][]string
	tput := func(r *fleetRun) float64 { return float64(all) / r.Took.Seconds() }
	perTenant := func(d time.Duration, n int) string {
		if n == 0 || d == 0 {
			return "–"
		}
		return ms(d / time.Duration(n))
	}
	for _, r := range runs {
		rows = append(rows, []string{r.Name, ms(r.Took), rate(tput(r), "tenants/s"), perTenant(r.Schema, nSchema), perTenant(r.Database, nDB)})
	}
	b.WriteString(table([]string{"contender", "wall time", "throughput", "per schema tenant", "per database tenant"}, rows))
	b.WriteString("\nPer-tenant times: the product's are the mean of its own per-tenant durations (each worker's time on a tenant, lock included; " +
		"the workers overlap); the loop's and the floor's are each part's wall time ÷ its tenants.\n\n")
	prod, floor := runs[0], runs[len(runs)-1]
	rf := tput(prod) / tput(floor)
	if len(runs) == 3 {
		loop := runs[1]
		rl := tput(prod) / tput(loop)
		s.Rows = append(s.Rows, Row{Bench: "3. Fleet migrations", Metric: "tenants/s vs golang-migrate CLI loop", Ours: rate(tput(prod), "tenants/s"), Base: rate(tput(loop), "tenants/s"), Ratio: rl, Target: "≥ 10×", Met: yesNo(rl >= 10)})
	}
	s.Rows = append(s.Rows, Row{Bench: "3. Fleet migrations", Metric: "tenants/s vs raw SQL floor", Ours: rate(tput(prod), "tenants/s"), Base: rate(tput(floor), "tenants/s"), Ratio: rf, Target: "≥ 0.50×", Met: yesNo(rf >= 0.5)})
	if prod.StmtsOK {
		b.WriteString("What PostgreSQL ran for the product's run:\n\n")
		b.WriteString(stmtTable(prod.Stmts, all, "tenant"))
		b.WriteString("\n")
	}
	s.Body = b.String() + fleetAnalysis(runs, all, nSchema, nDB, conc)
	return s
}
