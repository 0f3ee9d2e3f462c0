package cdrs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/rates"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// env is one provisioned tenant with its CDR and rate stores.
type env struct {
	t     *testing.T
	db    *gorm.DB
	cdrs  *cdrs.Store
	rates *rates.Store
}

// newEnv provisions a tenant in mode; its timezone is tz.
func newEnv(t *testing.T, mode controlplane.Isolation, tz string) *env {
	f := tenanttest.New(t, mode, 1, router.Config{})
	db, tn := f.Tenant(t, 0)
	own := *tn // the fixture's snapshot is shared; change a copy
	own.Timezone = tz
	return &env{t: t, db: db, cdrs: &cdrs.Store{DB: db, Tenant: &own}, rates: &rates.Store{DB: db, Tenant: &own}}
}

// bothModes runs fn against a tenant (timezone tz) in each isolation mode.
func bothModes(t *testing.T, tz string, fn func(t *testing.T, e *env)) {
	for _, mode := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			fn(t, newEnv(t, mode, tz))
		})
	}
}

// inTZ returns a store of the same tenant seen with another timezone, as
// the next request after a PATCH of the tenant's timezone would.
func (e *env) inTZ(tz string) *cdrs.Store {
	own := *e.cdrs.Tenant
	own.Timezone = tz
	return &cdrs.Store{DB: e.db, Tenant: &own}
}

// rate creates a rate: fee, blocks and an open-ended or bounded period.
func (e *env) rate(prefix, perMinute, fee string, min, inc int, from, to string) *rates.Rate {
	e.t.Helper()
	rpm, cf := rates.ParseMoney(perMinute), rates.ParseMoney(fee)
	sp := rates.Spec{Prefix: prefix, RatePerMinute: &rpm, ConnectFee: &cf, MinSeconds: &min, IncrementSeconds: &inc, EffectiveFrom: from}
	if to != "" {
		sp.EffectiveTo = &to
	}
	r, err := e.rates.Create(context.Background(), sp)
	require.NoError(e.t, err)
	return r
}

// ingest posts one CDR and requires success.
func (e *env) ingest(s cdrs.Spec) *cdrs.Result {
	e.t.Helper()
	r, err := e.cdrs.Ingest(context.Background(), s)
	require.NoError(e.t, err)
	return r
}

// uuid returns the n-th test call UUID.
func uuid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

const rfc = time.RFC3339Nano

// answered is an outbound call answered after ring seconds and talking
// billsec seconds.
func answered(n int, dst string, start time.Time, ring, billsec int) cdrs.Spec {
	a := start.Add(time.Duration(ring) * time.Second).Format(rfc)
	d := ring + billsec
	return cdrs.Spec{
		UUID: uuid(n), Direction: "outbound", Src: "1001", Dst: dst,
		StartAt: start.Format(rfc), AnswerAt: &a, EndAt: start.Add(time.Duration(d) * time.Second).Format(rfc),
		Duration: &d, Billsec: billsec, Disposition: "ANSWERED",
	}
}

// missed is an outbound call that rang ring seconds and was not answered.
func missed(n int, dst string, start time.Time, ring int) cdrs.Spec {
	return cdrs.Spec{
		UUID: uuid(n), Direction: "outbound", Src: "1001", Dst: dst,
		StartAt: start.Format(rfc), EndAt: start.Add(time.Duration(ring) * time.Second).Format(rfc),
		Duration: &ring, Disposition: "NO ANSWER",
	}
}

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var de *controlplane.Error
	require.ErrorAs(t, err, &de, "%v", err)
	return de.Fields
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// count returns how many CDRs the tenant has.
func (e *env) count() int {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.Raw(`SELECT count(*) FROM `+query.Table(e.db, "cdrs")).Scan(&n).Error)
	return int(n)
}
