package cdrs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// BenchmarkIngestBatch: one batch of MaxBatch CDRs, validated, rated and
// stored, in a schema-mode tenant (as benchmark 5 of bench/ runs it, without
// HTTP), and the plain INSERT of the same rows that benchmark compares it
// with. The table is emptied between batches, outside the timer.
func BenchmarkIngestBatch(b *testing.B) {
	f := tenanttest.New(b, controlplane.IsolationSchema, 1, router.Config{})
	db, tn := f.Tenant(b, 0)
	ctx := context.Background()
	rs := &rates.Store{DB: db, Tenant: tn}
	for _, p := range []string{"1", "44", "4420", "33", "49"} {
		rpm, fee := rates.ParseMoney("0.0120"), rates.ParseMoney("0.0150")
		min, inc := 30, 6
		if _, err := rs.Create(ctx, rates.Spec{Prefix: p, RatePerMinute: &rpm, ConnectFee: &fee, MinSeconds: &min, IncrementSeconds: &inc, EffectiveFrom: "2025-01-01T00:00:00Z"}); err != nil {
			b.Fatal(err)
		}
	}
	store := &cdrs.Store{DB: db, Tenant: tn}
	dsts := []string{"+442071838750", "+4930123456", "+15557654321", "+33142685300", "+61291234567"}
	batch := make([]cdrs.Spec, cdrs.MaxBatch)
	start := time.Date(2025, 11, 2, 0, 0, 0, 0, time.UTC)
	for i := range batch {
		batch[i] = answered(i, dsts[i%len(dsts)], start.Add(time.Duration(i)*time.Second), 4, 5+i%600)
		if i%10 == 8 {
			batch[i] = missed(i, dsts[0], start, 25)
		}
	}
	table := query.Table(db, "cdrs")
	truncate := func(b *testing.B) {
		b.StopTimer()
		if err := db.Exec(`TRUNCATE ` + table).Error; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.Run("product", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			truncate(b)
			res, err := store.IngestBatch(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if !res[len(res)-1].Created {
				b.Fatalf("%+v", res[len(res)-1])
			}
		}
	})
	// The floor of bench/'s benchmark 5: the same rows in one multi-row
	// INSERT of their 10 columns, not rated, over one pgx connection.
	b.Run("plain-insert", func(b *testing.B) {
		conn, err := pgx.Connect(ctx, f.Server.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + table + " (uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec, disposition) VALUES ")
		var args []any
		at := func(s string) time.Time { t, _ := time.Parse(time.RFC3339Nano, s); return t }
		for i, c := range batch {
			if i > 0 {
				sb.WriteString(",")
			}
			n := len(args)
			fmt.Fprintf(&sb, "($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10)
			var answer *time.Time
			if c.AnswerAt != nil {
				a := at(*c.AnswerAt)
				answer = &a
			}
			args = append(args, c.UUID, c.Direction, c.Src, c.Dst, at(c.StartAt), answer, at(c.EndAt), *c.Duration, c.Billsec, c.Disposition)
		}
		for b.Loop() {
			truncate(b)
			if _, err := conn.Exec(ctx, sb.String(), args...); err != nil {
				b.Fatal(err)
			}
		}
	})
}
