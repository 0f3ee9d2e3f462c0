package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// cdr is one call as a switch posts it (docs/BILLING.md).
type cdr struct {
	UUID        string     `json:"uuid"`
	Direction   string     `json:"direction"`
	Src         string     `json:"src"`
	Dst         string     `json:"dst"`
	StartAt     time.Time  `json:"start_at"`
	AnswerAt    *time.Time `json:"answer_at,omitempty"`
	EndAt       time.Time  `json:"end_at"`
	Duration    int        `json:"duration"`
	Billsec     int        `json:"billsec"`
	Disposition string     `json:"disposition"`
}

// ingestRates is the tenant's rate deck: overlapping prefixes, so rating
// picks the longest match, and some destinations left without a rate.
var ingestRates = []map[string]any{
	{"prefix": "1", "rate_per_minute": "0.0100", "min_seconds": 60, "increment_seconds": 60},
	{"prefix": "44", "rate_per_minute": "0.0300", "min_seconds": 30, "increment_seconds": 6},
	{"prefix": "4420", "rate_per_minute": "0.0120", "connect_fee": "0.0150", "min_seconds": 30, "increment_seconds": 6},
	{"prefix": "33", "rate_per_minute": "0.0250", "min_seconds": 60, "increment_seconds": 1},
	{"prefix": "49", "rate_per_minute": "0.0200", "min_seconds": 1, "increment_seconds": 1},
}

// ingestCDRs makes n CDRs of a realistic mix: 60% answered outbound calls
// to rated destinations, 10% to a destination without a rate, 10%
// answered inbound, 10% unanswered, 10% internal.
func ingestCDRs(n int, seed uint64) []cdr {
	rng := rand.New(rand.NewPCG(seed, 7))
	rated := []string{"+442071838750", "+4930123456", "+15557654321", "+33142685300", "+447700900123", "+12125550100"}
	day := time.Date(2025, 11, 2, 0, 0, 0, 0, time.UTC)
	out := make([]cdr, n)
	for i := range out {
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.Uint32())
		}
		u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80
		c := cdr{
			UUID:      fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
			Direction: "outbound", Src: "1001", Dst: rated[rng.IntN(len(rated))],
			StartAt:     day.Add(time.Duration(rng.IntN(86400)) * time.Second),
			Disposition: "ANSWERED",
		}
		billsec := 5 + rng.IntN(600)
		switch i % 10 {
		case 6:
			c.Dst = "+61291234567" // no rate
		case 7:
			c.Direction, c.Src, c.Dst = "inbound", "+15551230000", "+15557654321"
		case 8:
			c.Disposition, billsec = "NO ANSWER", 0
		case 9:
			c.Direction, c.Dst = "internal", "1002"
		}
		if billsec > 0 {
			a := c.StartAt.Add(4 * time.Second)
			c.AnswerAt = &a
			c.EndAt = a.Add(time.Duration(billsec) * time.Second)
			c.Duration, c.Billsec = 4+billsec, billsec
		} else {
			c.EndAt = c.StartAt.Add(25 * time.Second)
			c.Duration = 25
		}
		out[i] = c
	}
	return out
}

// ingestResult is benchmark 5.
type ingestResult struct {
	CDRs, Batch   int
	Prod, Plain   []time.Duration // per round: all batches
	ProdCPU       []time.Duration // serve's CPU per round
	Rated, Stored int
	Stmts         stmtStats
	StmtsOK       bool
}

// ingest is benchmark 5: CDRs posted in batches to POST /api/cdrs and
// rated, against a plain multi-row INSERT of the same rows (no rating) into
// an identical table (another tenant's) of the same database, over one
// connection, in alternating rounds. Both tables are emptied before each
// round.
func (e *env) ingest(ctx context.Context) (*Section, error) {
	r := &ingestResult{CDRs: e.sz.CDRs, Batch: e.sz.CDRBatch}
	cat, ten := e.pg.run+"_ingest_cat", e.pg.run+"_ingest"
	for _, db := range []string{cat, ten} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	o := serveOpts{name: "serve (ingest)", catalog: cat, tenantDB: ten, prefix: e.pg.run + "i_", isolation: "schema"}
	var pprofAddr string
	var err error
	if e.cfg.ProfileDir != "" {
		// Profiling runs serve with pprof: those numbers are not the report's.
		if pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		o.bin, o.extra = e.bin.pprof, map[string]string{"BENCH_PPROF_ADDR": pprofAddr}
	}
	srv, err := e.serve(ctx, o)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	a := newAPI(srv)
	rated, err := a.createTenant(ctx, e.tenantSpec("rated", 0, "schema"))
	if err != nil {
		return nil, err
	}
	plain, err := a.createTenant(ctx, e.tenantSpec("plain", 0, "schema"))
	if err != nil {
		return nil, err
	}
	for _, rt := range ingestRates {
		rt["effective_from"] = "2025-01-01T00:00:00Z"
		if err := a.do(ctx, http.MethodPost, rated.Domain, "/api/rates", rt, nil, http.StatusCreated); err != nil {
			return nil, err
		}
	}
	conn, err := e.pg.connect(ctx, ten)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)

	batches := func(cdrs []cdr) [][]cdr {
		var out [][]cdr
		for i := 0; i < len(cdrs); i += r.Batch {
			out = append(out, cdrs[i:min(i+r.Batch, len(cdrs))])
		}
		return out
	}
	// The product: the request bodies are encoded before the clock starts.
	product := func(seed uint64) (time.Duration, time.Duration, error) {
		var bodies [][]byte
		for _, b := range batches(ingestCDRs(r.CDRs, seed)) {
			body, err := json.Marshal(map[string]any{"cdrs": b})
			if err != nil {
				return 0, 0, err
			}
			bodies = append(bodies, body)
		}
		if _, err := conn.Exec(ctx, `TRUNCATE `+ident(rated.DBName)+`.cdrs`); err != nil {
			return 0, 0, err
		}
		cpu0, err := srv.cpu()
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		for _, body := range bodies {
			var res struct{ Created int }
			if err := a.do(ctx, http.MethodPost, rated.Domain, "/api/cdrs", body, &res, http.StatusCreated); err != nil {
				return 0, 0, err
			}
		}
		took := time.Since(start)
		cpu1, err := srv.cpu()
		return took, cpu1 - cpu0, err
	}
	// The floor: the same rows, arguments built before the clock starts.
	table := ident(plain.DBName) + ".cdrs"
	floor := func(seed uint64) (time.Duration, error) {
		type stmt struct {
			sql  string
			args []any
		}
		var stmts []stmt
		for _, b := range batches(ingestCDRs(r.CDRs, seed)) {
			var sb strings.Builder
			sb.WriteString("INSERT INTO " + table + " (uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec, disposition) VALUES ")
			args := make([]any, 0, len(b)*10)
			for i, c := range b {
				if i > 0 {
					sb.WriteString(",")
				}
				n := len(args)
				fmt.Fprintf(&sb, "($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10)
				args = append(args, c.UUID, c.Direction, c.Src, c.Dst, c.StartAt, c.AnswerAt, c.EndAt, c.Duration, c.Billsec, c.Disposition)
			}
			stmts = append(stmts, stmt{sb.String(), args})
		}
		if _, err := conn.Exec(ctx, `TRUNCATE `+table); err != nil {
			return 0, err
		}
		start := time.Now()
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	for round := range e.sz.IngestRounds {
		seed := uint64(round + 1)
		for k := range 2 {
			if (round+k)%2 == 0 {
				took, cpu, err := product(seed)
				if err != nil {
					return nil, err
				}
				r.Prod, r.ProdCPU = append(r.Prod, took), append(r.ProdCPU, cpu)
				e.logf("ingest round %d: product %s (%.0f CDRs/s)", round+1, ms(took), float64(r.CDRs)/took.Seconds())
			} else {
				took, err := floor(seed)
				if err != nil {
					return nil, err
				}
				r.Plain = append(r.Plain, took)
				e.logf("ingest round %d: plain INSERT %s (%.0f rows/s)", round+1, ms(took), float64(r.CDRs)/took.Seconds())
			}
		}
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE rate_id IS NOT NULL), count(*) FROM `+ident(rated.DBName)+`.cdrs`).Scan(&r.Rated, &r.Stored); err != nil {
		return nil, err
	}
	if r.Stored != r.CDRs {
		return nil, fmt.Errorf("the product stored %d CDRs, want %d", r.Stored, r.CDRs)
	}
	r.Stmts, r.StmtsOK, err = e.pg.statements(ctx, func() error {
		_, _, err := product(1000)
		return err
	})
	if err != nil {
		return nil, err
	}
	if pprofAddr != "" {
		// Rounds back to back for a few seconds, under the CPU profiler.
		d := 5 * time.Second
		err := e.profile(ctx, pprofAddr, "ingest", 0, d, func() error {
			for seed, start := uint64(2000), time.Now(); time.Since(start) < d; seed++ {
				if _, _, err := product(seed); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return e.ingestSection(r), nil
}

// ingestSection reports benchmark 5.
func (e *env) ingestSection(r *ingestResult) *Section {
	s := &Section{Title: "5. Ingest"}
	var b strings.Builder
	batches := (r.CDRs + r.Batch - 1) / r.Batch
	fmt.Fprintf(&b, "%d CDRs posted to `POST /api/cdrs` in %d batches of %d, one after another over one keep-alive connection, and rated at ingest "+
		"(a deck of %d overlapping prefixes; 60%% answered outbound calls to rated numbers, 10%% to a number without a rate, 10%% inbound, "+
		"10%% unanswered, 10%% internal), against a plain multi-row `INSERT INTO cdrs (10 columns) VALUES (...), ...` of the same rows, %d rows "+
		"per statement (bind parameters, pgx), no rating, into the identical `cdrs` table of another tenant schema in the same database, over one "+
		"connection. Request bodies and INSERT arguments are built before the clock starts; both tables are truncated before each round; "+
		"%d alternating rounds, medians.\n\n", r.CDRs, batches, r.Batch, len(ingestRates), r.Batch, e.sz.IngestRounds)
	var prod, plain, cpu []float64
	for i := range r.Prod {
		prod = append(prod, float64(r.CDRs)/r.Prod[i].Seconds())
		cpu = append(cpu, float64(r.ProdCPU[i]))
	}
	for i := range r.Plain {
		plain = append(plain, float64(r.CDRs)/r.Plain[i].Seconds())
	}
	mp, mf := median(prod), median(plain)
	each := func(xs []float64) string {
		var p []string
		for _, x := range xs {
			p = append(p, fmt.Sprintf("%.0f", x))
		}
		return strings.Join(p, ", ")
	}
	b.WriteString(table([]string{"contender", "CDRs/s", "per batch of " + fmt.Sprint(r.Batch), "CDRs/s per round"}, [][]string{
		{"product: POST /api/cdrs, rated", rate(mp, "CDRs/s"), ms(time.Duration(float64(r.Batch) / mp * float64(time.Second))), each(prod)},
		{"plain multi-row INSERT, not rated", rate(mf, "CDRs/s"), ms(time.Duration(float64(r.Batch) / mf * float64(time.Second))), each(plain)},
	}))
	ratio := mp / mf
	fmt.Fprintf(&b, "\n%d of the %d stored CDRs were rated (the rest are unanswered, internal or without a rate, as designed). "+
		"serve used %s of CPU per batch.\n\n", r.Rated, r.Stored, ms(time.Duration(median(cpu)/float64(batches))))
	if r.StmtsOK {
		b.WriteString(stmtTable(r.Stmts, batches, "batch"))
		b.WriteString("\n")
	}
	s.Rows = append(s.Rows, Row{Bench: "5. Ingest", Metric: "CDRs/s, rated, vs plain INSERT", Ours: rate(mp, "CDRs/s"), Base: rate(mf, "rows/s"), Ratio: ratio, Target: "≥ 0.50×", Met: yesNo(ratio >= 0.5)})
	s.Body = b.String() + ingestAnalysis(r, ratio)
	return s
}
