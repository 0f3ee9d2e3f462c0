package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// provSeries is one contender of benchmark 2 in one isolation mode.
type provSeries struct {
	Name    string
	Lat     latencies
	Stmts   stmtStats
	StmtsOK bool
	StmtOps int
}

type provMode struct {
	Mode             string
	Floor, One, Many provSeries
	// Burst (database mode): creations back to back, without waiting for
	// the spares to be made again.
	Burst provSeries
	// Unspared are the burst's creations that found no spare ready: the
	// ordinary path (clone, role, ownership), beside the filler.
	Unspared latencies
	// NoSpare (database mode): a serve that keeps no spares
	// (TENANT_SPARE_DATABASES=0), timed in turn with the others: the
	// ordinary path alone, with nothing made beside it.
	NoSpare provSeries
}

// provSpares is TENANT_SPARE_DATABASES of the two serves of benchmark 2
// (the product's default); provBurst is the length of the burst series.
const (
	provSpares = 2
	provBurst  = 20
)

// provision is benchmark 2: tenants created one after another through the
// API, per isolation mode, by a binary with the checkout's migrations and
// by one with ManyMigrations migration files, against the raw floor over
// one connection: CREATE DATABASE, or CREATE SCHEMA plus the tenant DDL in
// one round trip. The three contenders take turns tenant by tenant (the
// order rotates), so drift of the machine hits them alike.
func (e *env) provision(ctx context.Context) (*Section, error) {
	run := e.pg.run
	cat1, catN, cat0, ten := run+"_prov1_cat", run+"_provn_cat", run+"_prov0_cat", run+"_prov"
	for _, db := range []string{cat1, catN, cat0, ten} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	p1, pN, p0, pf := run+"p1_", run+"pn_", run+"p0_", run+"pf_"
	spares := map[string]string{"TENANT_SPARE_DATABASES": strconv.Itoa(provSpares)}
	s1, err := e.serve(ctx, serveOpts{name: "serve (checkout's migrations)", catalog: cat1, tenantDB: ten, prefix: p1, extra: spares})
	if err != nil {
		return nil, err
	}
	defer s1.stop()
	sN, err := e.serve(ctx, serveOpts{name: "serve (many migrations)", bin: e.bin.many, catalog: catN, tenantDB: ten, prefix: pN, extra: spares})
	if err != nil {
		return nil, err
	}
	defer sN.stop()
	s0, err := e.serve(ctx, serveOpts{name: "serve (no spares)", catalog: cat0, tenantDB: ten, prefix: p0, extra: map[string]string{"TENANT_SPARE_DATABASES": "0"}})
	if err != nil {
		return nil, err
	}
	defer s0.stop()
	a1, aN, a0 := newAPI(s1), newAPI(sN), newAPI(s0)

	// Each serve keeps spare databases ready in the background (made at its
	// start, and again after each claim). No timed creation may overlap
	// that background work, nor the other serve's: before each one the
	// harness waits, untimed, until both catalogs have all their spares
	// ready and none being made. The timed series thus show a creation
	// that finds its spares ready (creations coming slower than spares are
	// made); the burst series below shows what happens when they do not.
	var spareConns []*pgx.Conn
	for _, db := range []string{cat1, catN} {
		c, err := e.pg.connect(ctx, db)
		if err != nil {
			return nil, err
		}
		defer c.Close(ctx)
		spareConns = append(spareConns, c)
	}
	waitSpares := func() error {
		deadline := time.Now().Add(2 * time.Minute)
		for _, c := range spareConns {
			for {
				var ready, making int
				// The comment keeps the harness's polls out of the statement
				// evidence (its filter drops "pg_stat" queries).
				if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'ready'), count(*) FILTER (WHERE state <> 'ready')
					FROM tenant_spares /* harness poll, not pg_stat evidence */`).Scan(&ready, &making); err != nil {
					return err
				}
				if ready >= provSpares && making == 0 {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("spares not ready after 2 minutes (%d ready, %d being made)", ready, making)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		return nil
	}

	// The floor's two connections: the tenant database (schemas) and the
	// server's maintenance database (CREATE DATABASE).
	floorSchema, err := e.pg.connect(ctx, ten)
	if err != nil {
		return nil, err
	}
	defer floorSchema.Close(ctx)
	floorDB, err := e.pg.connect(ctx, strings.TrimPrefix(e.pg.url.Path, "/"))
	if err != nil {
		return nil, err
	}
	defer floorDB.Close(ctx)
	var ddl strings.Builder
	for _, m := range e.mig {
		ddl.WriteString(m.up + "\n;\n")
	}
	floor := func(mode, name string) error {
		if mode == "database" {
			_, err := floorDB.PgConn().Exec(ctx, `CREATE DATABASE `+ident(name)).ReadAll()
			return err
		}
		s := ident(name)
		_, err := floorSchema.PgConn().Exec(ctx, "BEGIN;\nCREATE SCHEMA "+s+";\nSET LOCAL search_path TO "+s+";\n"+ddl.String()+"COMMIT;").ReadAll()
		return err
	}
	product := func(a *api, tag, mode string, i int, want uint) error {
		t, err := a.createTenant(ctx, e.tenantSpec(tag, i, mode))

		if err == nil && (t.SchemaVersion != want || t.Provisioning != "ready") {
			err = fmt.Errorf("tenant %s is %s at version %d, want ready at %d", t.Slug, t.Provisioning, t.SchemaVersion, want)
		}
		return err
	}
	many := e.base + uint(len(e.manyMigrations()))

	var modes []*provMode
	for _, mode := range []string{"schema", "database"} {
		m := &provMode{Mode: mode}
		m.Floor.Name = "floor: " + map[string]string{"schema": "CREATE SCHEMA + DDL, one round trip", "database": "CREATE DATABASE"}[mode]
		m.One.Name = fmt.Sprintf("product, %d migration file(s)", len(e.mig))
		m.Many.Name = fmt.Sprintf("product, %d migration files", many)
		tag := mode[:1]
		steps := []func(i int) (*provSeries, error){
			func(i int) (*provSeries, error) { return &m.Floor, floor(mode, fmt.Sprintf("%s%s%d", pf, tag, i)) },
			func(i int) (*provSeries, error) { return &m.One, product(a1, "p1"+tag, mode, i, e.base) },
			func(i int) (*provSeries, error) { return &m.Many, product(aN, "pn"+tag, mode, i, many) },
		}
		if mode == "database" {
			m.NoSpare.Name = fmt.Sprintf("product, %d migration file(s), no spares (`TENANT_SPARE_DATABASES=0`)", len(e.mig))
			steps = append(steps, func(i int) (*provSeries, error) { return &m.NoSpare, product(a0, "p0"+tag, mode, i, e.base) })
		}
		e.logf("provision %s: %d tenants per contender", mode, e.sz.ProvisionTenants)
		for i := range e.sz.ProvisionTenants {
			for k := range steps {
				if err := waitSpares(); err != nil {
					return nil, err
				}
				t0 := time.Now()
				series, err := steps[(i+k)%len(steps)](i)
				if err != nil {
					return nil, err
				}
				series.Lat = append(series.Lat, time.Since(t0))
			}
		}
		// Evidence: what PostgreSQL runs per tenant, each creation in a
		// pg_stat_statements window of its own, the contenders taking turns
		// as in the timed series (back-to-back creations of one contender
		// would meet checkpoints the others do not).
		for i := range min(10, e.sz.ProvisionTenants) {
			for j, step := range steps {
				if err := waitSpares(); err != nil {
					return nil, err
				}
				var series *provSeries
				// The window lasts until the spare claimed is made again:
				// the server's work per tenant includes it.
				st, ok, err := e.pg.statements(ctx, func() error {
					var err error
					if series, err = step(10000 + i); err != nil {
						return err
					}
					return waitSpares()
				})
				if err != nil {
					return nil, fmt.Errorf("evidence %d: %w", j, err)
				}
				series.Stmts, series.StmtsOK, series.StmtOps = series.Stmts.add(st), ok, series.StmtOps+1
			}
		}
		e.logf("provision %s: p50 floor %s, product %s, product with %d files %s", mode, ms(m.Floor.Lat.p(0.5)), ms(m.One.Lat.p(0.5)), many, ms(m.Many.Lat.p(0.5)))
		if mode == "database" {
			// A burst: creations back to back, as fast as they answer. The
			// first take the spares; the others take the ordinary path while
			// the filler makes new spares beside them.
			if err := waitSpares(); err != nil {
				return nil, err
			}
			spared := 0
			for i := range min(provBurst, e.sz.ProvisionTenants+provSpares) {
				// Which spares are ready as the creation starts (untimed; a
				// spare finished in the instant between is missed).
				ready := map[int64]bool{}
				rows, err := spareConns[0].Query(ctx, `SELECT id FROM tenant_spares /* harness poll, not pg_stat evidence */ WHERE state = 'ready'`)
				if err != nil {
					return nil, err
				}
				ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
				if err != nil {
					return nil, err
				}
				for _, id := range ids {
					ready[id] = true
				}
				t0 := time.Now()
				t, err := a1.createTenant(ctx, e.tenantSpec("b1"+tag, i, mode))
				if err != nil {
					return nil, err
				}
				m.Burst.Lat = append(m.Burst.Lat, time.Since(t0))
				if ready[t.ID] {
					spared++
				} else {
					m.Unspared = append(m.Unspared, m.Burst.Lat[len(m.Burst.Lat)-1])
				}
			}
			m.Burst.Name = fmt.Sprintf("product, %d back to back (%d got a spare)", len(m.Burst.Lat), spared)
			e.logf("provision %s: burst of %d, p50 %s, %d got a spare", mode, len(m.Burst.Lat), ms(m.Burst.Lat.p(0.5)), spared)
			if err := waitSpares(); err != nil {
				return nil, err
			}
		}
		modes = append(modes, m)
	}
	s1.stop()
	sN.stop()
	s0.stop()
	// Leave the cluster as lean as the next benchmarks expect.
	for _, db := range []string{ten, cat1, catN, cat0} {
		if _, err := e.pg.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(db)+` WITH (FORCE)`); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{p1, pN, p0, pf} {
		if err := e.pg.dropPrefixed(ctx, p); err != nil {
			return nil, err
		}
	}
	return e.provisionSection(modes, many), nil
}

// provisionSection reports benchmark 2.
func (e *env) provisionSection(modes []*provMode, many uint) *Section {
	s := &Section{Title: "2. Provisioning"}
	var b strings.Builder
	fmt.Fprintf(&b, "%d tenants per contender and isolation mode, created one after another, each timed end to end: `POST /api/tenants` until its `201` "+
		"(the catalog row, the database or schema, the role in database mode, the tenant migrations, the first API key). Two serve processes: "+
		"one built from the checkout (%d tenant migration file), one with %d migration files (the checkout's plus small `ALTER TABLE ... ADD COLUMN` "+
		"files, added with `go build -overlay`). The floor, over one connection of the harness: `CREATE DATABASE` (database mode), or "+
		"`BEGIN; CREATE SCHEMA; SET LOCAL search_path; <the tenant DDL>; COMMIT` sent as one simple-protocol round trip (schema mode). "+
		"The three take turns tenant by tenant, the order rotating; in database mode a fourth takes its turn too: a third serve, built from the "+
		"checkout, that keeps no spare databases (`TENANT_SPARE_DATABASES=0`), so each of its creations takes the ordinary path (the role, then "+
		"`CREATE DATABASE … OWNER … TEMPLATE`, marked as it is made) with nothing made beside it.\n\n"+
		"Each serve keeps %d spare tenant databases ready (`TENANT_SPARE_DATABASES`, the default), made in the background at its start and after each claim; "+
		"a database-mode creation claims one instead of cloning the template. No timed creation overlaps that background work: before each one "+
		"(floor included) the harness waits, untimed, until both serves have all their spares ready. So the database-mode rows show a creation that finds "+
		"a spare ready, i.e. creations arriving more slowly than spares are made; the burst row shows %d creations sent back to back right after, "+
		"which use the spares up and then take the ordinary path beside the filler making new ones.\n\n", e.sz.ProvisionTenants, len(e.mig), many, provSpares, provBurst)
	var rows [][]string
	for _, m := range modes {
		fp50 := m.Floor.Lat.p(0.5)
		series := []*provSeries{&m.Floor, &m.One, &m.Many}
		if len(m.NoSpare.Lat) > 0 {
			series = append(series, &m.NoSpare)
		}
		if len(m.Burst.Lat) > 0 {
			series = append(series, &m.Burst)
		}
		for _, sr := range series {
			stm, srv := "–", "–"
			if sr.StmtsOK && sr.StmtOps > 0 {
				stm = fmt.Sprintf("%.0f", float64(sr.Stmts.Calls)/float64(sr.StmtOps))
				srv = ms(time.Duration(sr.Stmts.TotalMS / float64(sr.StmtOps) * float64(time.Millisecond)))
			}
			rows = append(rows, []string{m.Mode, sr.Name, ms(sr.Lat.p(0.5)), ms(sr.Lat.p(0.99)), fmtRatio(float64(sr.Lat.p(0.5)) / float64(fp50)), stm, srv})
		}
		one, mny := m.One.Lat.p(0.5), m.Many.Lat.p(0.5)
		r1, rm := float64(one)/float64(fp50), float64(mny)/float64(one)
		s.Rows = append(s.Rows,
			Row{Bench: "2. Provisioning", Metric: "p50 per tenant, " + m.Mode + " mode", Ours: ms(one), Base: "floor " + ms(fp50), Ratio: r1, Target: "≤ 1.30×", Met: yesNo(r1 <= 1.3)},
			Row{Bench: "2. Provisioning", Metric: "p99 per tenant, " + m.Mode + " mode", Ours: ms(m.One.Lat.p(0.99)), Base: "floor " + ms(m.Floor.Lat.p(0.99)), Ratio: float64(m.One.Lat.p(0.99)) / float64(m.Floor.Lat.p(0.99))},
			Row{Bench: "2. Provisioning", Metric: fmt.Sprintf("p50 with %d files vs %d, %s mode", many, len(e.mig), m.Mode), Ours: ms(mny), Base: ms(one), Ratio: rm, Target: "≤ 1.10× (flat)", Met: yesNo(rm <= 1.1)},
		)
		if len(m.Burst.Lat) > 0 {
			s.Rows = append(s.Rows, Row{Bench: "2. Provisioning", Metric: fmt.Sprintf("p50 of a burst of %d, %s mode (spares used up)", len(m.Burst.Lat), m.Mode),
				Ours: ms(m.Burst.Lat.p(0.5)), Base: "floor " + ms(fp50), Ratio: float64(m.Burst.Lat.p(0.5)) / float64(fp50)})
		}
		if len(m.NoSpare.Lat) > 0 {
			r0 := float64(m.NoSpare.Lat.p(0.5)) / float64(fp50)
			s.Rows = append(s.Rows, Row{Bench: "2. Provisioning", Metric: fmt.Sprintf("p50 per tenant with no spares (TENANT_SPARE_DATABASES=0), %s mode", m.Mode),
				Ours: ms(m.NoSpare.Lat.p(0.5)), Base: "floor " + ms(fp50), Ratio: r0, Target: "≤ 1.30×", Met: yesNo(r0 <= 1.3)})
		}
		if len(m.Unspared) > 0 {
			s.Rows = append(s.Rows, Row{Bench: "2. Provisioning", Metric: fmt.Sprintf("p50 without a spare (%d of the burst), %s mode", len(m.Unspared), m.Mode),
				Ours: ms(m.Unspared.p(0.5)), Base: "floor " + ms(fp50), Ratio: float64(m.Unspared.p(0.5)) / float64(fp50)})
		}
	}
	b.WriteString(table([]string{"mode", "contender", "p50", "p99", "p50 vs floor", "statements / tenant", "server time / tenant"}, rows))
	b.WriteString("\n\"Statements / tenant\" and \"server time / tenant\" come from `pg_stat_statements` over 10 more creations per contender, each in a window of its own, the contenders taking turns " +
		"(execution time inside PostgreSQL; the rest of a creation is round trips, connection setup and client work). A product's window lasts until " +
		"the spare it claimed has been made again, so in database mode these columns include the background work a creation causes, not only what it waits for. " +
		"\"Flat\" is read as: the p50 with many files within 10% of the p50 with one. In database mode a serve's first creation also builds " +
		"the template database (once per migration history), which shows in the p99.\n\n")
	for _, m := range modes {
		b.WriteString("Where the product's time goes, " + m.Mode + " mode:\n\n")
		b.WriteString(stmtTable(m.One.Stmts, m.One.StmtOps, "tenant"))
		b.WriteString("\n")
		// The path a creation takes when no spare is ready, beside the
		// floor it is held to (issue: ≤ 1.30× a bare CREATE DATABASE).
		if m.NoSpare.StmtsOK && m.NoSpare.StmtOps > 0 && m.Floor.StmtsOK && m.Floor.StmtOps > 0 {
			b.WriteString("The same, " + m.Mode + " mode without a spare (`TENANT_SPARE_DATABASES=0`):\n\n")
			b.WriteString(stmtTable(m.NoSpare.Stmts, m.NoSpare.StmtOps, "tenant"))
			b.WriteString("\nAnd the floor's:\n\n")
			b.WriteString(stmtTable(m.Floor.Stmts, m.Floor.StmtOps, "tenant"))
			b.WriteString("\n")
		}
	}
	s.Body = b.String() + provisionAnalysis(modes, many, len(e.mig))
	return s
}
