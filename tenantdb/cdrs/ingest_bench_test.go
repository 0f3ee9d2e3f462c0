package cdrs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// BenchmarkIngestBatch: one batch of MaxBatch CDRs, validated, rated and
// stored, in a schema-mode tenant (as benchmark 5 of bench/ runs it). The
// table is emptied between batches, outside the timer.
func BenchmarkIngestBatch(b *testing.B) {
	f := tenanttest.New(b, controlplane.IsolationSchema, 1, tenantdb.RouterConfig{})
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
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if err := db.Exec(`TRUNCATE ` + tenantdb.Table(db, "cdrs")).Error; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := store.IngestBatch(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if !res[len(res)-1].Created {
			b.Fatal(fmt.Sprintf("%+v", res[len(res)-1]))
		}
	}
}
