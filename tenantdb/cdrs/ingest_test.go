package cdrs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// worked sets up docs/DOMAIN.md's worked example: 44 at 0.0300, 4420 at 0.0120
// from 2025-01-01 after an older 0.0150 that ended that day; 0.0150 connect
// fee, 30/6 blocks.
func (e *env) worked() (uk, old, london int64) {
	uk = e.rate("44", "0.0300", "0.0150", 30, 6, "2020-01-01T00:00:00Z", "").ID
	old = e.rate("4420", "0.0150", "0.0150", 30, 6, "2020-01-01T00:00:00Z", "2025-01-01T00:00:00Z").ID
	london = e.rate("4420", "0.0120", "0.0150", 30, 6, "2025-01-01T00:00:00Z", "").ID
	return
}

func TestRatedAtIngest(t *testing.T) {
	t.Parallel()
	bothModes(t, "UTC", func(t *testing.T, e *env) {
		uk, old, london := e.worked()
		e.rate("44207", "0.0010", "0", 1, 1, "2030-01-01T00:00:00Z", "") // future-dated: never used below
		e.rate("999", "9999999999", "0", 1, 1, "2020-01-01T00:00:00Z", "")
		march := utc("2025-03-01T10:00:00Z")
		internal := answered(8, "1002", march, 2, 47)
		internal.Direction = "internal"
		anonymous := answered(9, "anonymous", march, 2, 47)
		zero := answered(10, "+442071838750", march, 5, 0)

		cases := []struct {
			name   string
			spec   cdrs.Spec
			rateID int64
			cost   string // "" for unrated
			reason string
		}{
			{"worked example", answered(1, "+442071838750", march, 3, 47), london, "0.0246", ""},
			{"dialled without +", answered(2, "442071838750", march, 3, 47), london, "0.0246", ""},
			{"before the change: the old 4420 rate", answered(3, "+442071838750", utc("2024-12-31T23:59:00Z"), 3, 47), old, "0.0270", ""},
			{"answered on the change instant: the new one", answered(4, "+442071838750", utc("2024-12-31T23:59:57Z"), 3, 47), london, "0.0246", ""},
			{"another UK number: 44", answered(5, "+441612345678", march, 3, 47), uk, "0.0390", ""},
			{"billsec 0: rated, nothing billed", zero, london, "0.0000", ""},
			{"no prefix matches", answered(6, "+33123456789", march, 3, 47), 0, "", cdrs.NoRate},
			{"not answered", missed(7, "+442071838750", march, 20), 0, "", cdrs.NotAnswered},
			{"internal call", internal, 0, "", cdrs.InternalCall},
			{"not a number", anonymous, 0, "", cdrs.InvalidDst},
			{"a cost numeric(15,4) cannot hold", answered(11, "+999", march, 1, 2_000_000_000), 0, "", cdrs.CostOutOfRange},
		}
		for _, tc := range cases {
			res := e.ingest(tc.spec)
			require.True(t, res.Created, tc.name)
			c := res.CDR
			if tc.cost == "" {
				require.Nil(t, c.Cost, tc.name)
				require.Nil(t, c.RateID, tc.name)
				require.Equal(t, tc.reason, *c.UnratedReason, tc.name)
				continue
			}
			require.NotNil(t, c.Cost, tc.name)
			require.Equal(t, tc.cost, c.Cost.StringFixed(4), tc.name)
			require.Equal(t, tc.rateID, *c.RateID, tc.name)
			require.Nil(t, c.UnratedReason, tc.name)
		}
		// What was stored is what came back.
		got, err := e.cdrs.Get(context.Background(), uuid(1))
		require.NoError(t, err)
		require.Equal(t, "0.0246", got.Cost.StringFixed(4))
		require.Equal(t, "+442071838750", got.Dst, "numbers are stored as dialled")
		require.Equal(t, utc("2025-03-01T10:00:03Z"), *got.AnswerAt)
	})
}

func TestIngestIsIdempotent(t *testing.T) {
	t.Parallel()
	bothModes(t, "UTC", func(t *testing.T, e *env) {
		ctx := context.Background()
		e.worked()
		spec := answered(1, "+442071838750", utc("2025-03-01T10:00:00Z"), 3, 47)
		first := e.ingest(spec)
		require.True(t, first.Created)

		again := e.ingest(spec)
		require.False(t, again.Created)
		require.Equal(t, first.CDR, again.CDR)

		// The stored CDR wins: a re-post never changes it.
		changed := spec
		changed.UUID = strings.ToUpper(spec.UUID)
		changed.Src = "9999"
		again = e.ingest(changed)
		require.False(t, again.Created)
		require.Equal(t, "1001", again.CDR.Src)

		// A batch mixing stored and new CDRs stores the new ones only.
		res, err := e.cdrs.IngestBatch(ctx, []cdrs.Spec{answered(2, "+4420", utc("2025-03-01T11:00:00Z"), 1, 10), spec})
		require.NoError(t, err)
		require.True(t, res[0].Created)
		require.False(t, res[1].Created)
		require.Equal(t, first.CDR.ID, res[1].ID)
		require.Equal(t, 2, e.count())
		// Each result carries the id and rating of the CDR as stored: the
		// new one's as rated now, the old one's unchanged.
		stored, err := e.cdrs.Get(ctx, uuid(2))
		require.NoError(t, err)
		require.Equal(t, stored.ID, res[0].ID)
		require.Equal(t, uuid(2), res[0].UUID)
		require.Equal(t, *stored.RateID, *res[0].RateID)
		require.Equal(t, "0.0210", res[0].Cost.StringFixed(4), "10 s bills 30 s on 30/6: 0.0150 + 30/60 × 0.0120")
		require.Equal(t, stored.Cost.StringFixed(4), res[0].Cost.StringFixed(4))
		require.Nil(t, res[0].UnratedReason)
		require.Equal(t, spec.UUID, res[1].UUID)
		require.Equal(t, *first.CDR.RateID, *res[1].RateID)
		require.Equal(t, "0.0246", res[1].Cost.StringFixed(4))
		require.Nil(t, res[1].UnratedReason)

		// Concurrent re-posts of one new CDR: exactly one stores it.
		const n = 8
		created := make([]bool, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := e.cdrs.Ingest(ctx, answered(3, "+4420", utc("2025-03-01T12:00:00Z"), 1, 10))
				if err == nil {
					created[i] = r.Created
				}
			}(i)
		}
		wg.Wait()
		wins := 0
		for _, c := range created {
			if c {
				wins++
			}
		}
		require.Equal(t, 1, wins)
		require.Equal(t, 3, e.count())
	})
}

func TestIngestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationSchema, "UTC")
	ctx := context.Background()
	start := utc("2025-03-01T10:00:00Z")
	ok := func() cdrs.Spec { return answered(1, "+4420", start, 3, 47) }
	with := func(change func(*cdrs.Spec)) cdrs.Spec { s := ok(); change(&s); return s }
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	id := func(n int64) *int64 { return &n }
	cases := []struct {
		name  string
		spec  cdrs.Spec
		field string
	}{
		{"missing uuid", with(func(s *cdrs.Spec) { s.UUID = "" }), "uuid"},
		{"not a uuid", with(func(s *cdrs.Spec) { s.UUID = "call-1" }), "uuid"},
		{"uuid without hyphens", with(func(s *cdrs.Spec) { s.UUID = "00000000000040008000000000000001" }), "uuid"},
		{"bad direction", with(func(s *cdrs.Spec) { s.Direction = "sideways" }), "direction"},
		{"bad disposition", with(func(s *cdrs.Spec) { s.Disposition = "answered" }), "disposition"},
		{"missing dst", with(func(s *cdrs.Spec) { s.Dst = "" }), "dst"},
		{"huge src", with(func(s *cdrs.Spec) { s.Src = strings.Repeat("1", 65) }), "src"},
		{"NUL in dst", with(func(s *cdrs.Spec) { s.Dst = "+44\x00" }), "dst"},
		{"missing start", with(func(s *cdrs.Spec) { s.StartAt = "" }), "start_at"},
		{"no offset", with(func(s *cdrs.Spec) { s.EndAt = "2025-03-01T10:00:50" }), "end_at"},
		{"year 0", with(func(s *cdrs.Spec) { s.StartAt = "0000-03-01T10:00:00Z" }), "start_at"},
		{"answer before start", with(func(s *cdrs.Spec) { s.AnswerAt = str("2025-03-01T09:59:59Z") }), "answer_at"},
		{"end before answer", with(func(s *cdrs.Spec) { s.EndAt = "2025-03-01T10:00:02Z"; s.Duration = num(2); s.Billsec = 0 }), "end_at"},
		{"end before start", func() cdrs.Spec { s := missed(1, "+4420", start, 5); s.EndAt = "2025-03-01T09:00:00Z"; return s }(), "end_at"},
		{"missing duration", with(func(s *cdrs.Spec) { s.Duration = nil }), "duration"},
		{"negative duration", with(func(s *cdrs.Spec) { s.Duration = num(-1) }), "duration"},
		{"duration off by 2 s", with(func(s *cdrs.Spec) { s.Duration = num(52) }), "duration"},
		{"billsec off by 2 s", with(func(s *cdrs.Spec) { s.Billsec = 45 }), "billsec"},
		{"billsec over duration", with(func(s *cdrs.Spec) { s.Billsec = 51 }), "billsec"},
		{"negative billsec", with(func(s *cdrs.Spec) { s.Billsec = -1 }), "billsec"},
		{"billsec without answer", func() cdrs.Spec { s := missed(1, "+4420", start, 20); s.Billsec = 10; return s }(), "billsec"},
		{"ANSWERED without answer_at", func() cdrs.Spec { s := missed(1, "+4420", start, 20); s.Disposition = "ANSWERED"; return s }(), "answer_at"},
		{"answer_at on a BUSY call", with(func(s *cdrs.Spec) { s.Disposition = "BUSY" }), "disposition"},
		{"zero extension id", with(func(s *cdrs.Spec) { s.ExtensionID = id(0) }), "extension_id"},
		{"unknown extension", with(func(s *cdrs.Spec) { s.ExtensionID = id(42) }), "extension_id"},
		{"unknown queue", with(func(s *cdrs.Spec) { s.QueueID = id(7) }), "queue_id"},
	}
	for _, tc := range cases {
		_, err := e.cdrs.Ingest(ctx, tc.spec)
		require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err), "%s: %v", tc.name, err)
		require.Contains(t, fieldsOf(t, err), tc.field, tc.name)
	}

	// A timestamp that does not parse is reported once, not again by every
	// rule that compares with it.
	_, err := e.cdrs.Ingest(ctx, with(func(s *cdrs.Spec) { s.AnswerAt = str("soon") }))
	require.Len(t, fieldsOf(t, err), 1)
	require.Contains(t, fieldsOf(t, err), "answer_at")

	// The switch's truncation is tolerated: 47.6 s of talk reported as 47 or 48.
	for i, billsec := range []int{47, 48} {
		s := answered(100+i, "+4420", start, 3, 47)
		s.EndAt = start.Add(50*time.Second + 600*time.Millisecond).Format(rfc)
		s.Billsec = billsec
		e.ingest(s)
	}

	// An extension of this tenant is accepted.
	var ext int64
	require.NoError(t, e.db.Raw(`INSERT INTO `+query.Table(e.db, "extensions")+` (number) VALUES ('1001') RETURNING id`).Scan(&ext).Error)
	res := e.ingest(with(func(s *cdrs.Spec) { s.UUID = uuid(200); s.ExtensionID = &ext }))
	require.Equal(t, ext, *res.CDR.ExtensionID)

	// A batch is all or nothing, and names each field by its place.
	before := e.count()
	bad := with(func(s *cdrs.Spec) { s.UUID = uuid(301); s.Billsec = 45 })
	_, err = e.cdrs.IngestBatch(ctx, []cdrs.Spec{
		answered(300, "+4420", start, 1, 10), bad, missed(302, "+4420", start, 5),
		with(func(s *cdrs.Spec) { s.UUID = uuid(300); s.Direction = "up" }),
	})
	require.Equal(t, controlplane.Invalid, controlplane.ErrorCode(err))
	f := fieldsOf(t, err)
	require.Equal(t, "must be end_at − answer_at in seconds (47s here, ±1 s)", f["cdrs[1].billsec"])
	require.Contains(t, f, "cdrs[3].direction")
	require.Contains(t, f["cdrs[3].uuid"], "repeats cdrs[0].uuid")
	require.Len(t, f, 3)
	require.Equal(t, before, e.count(), "nothing of a rejected batch is stored")

	_, err = e.cdrs.IngestBatch(ctx, nil)
	require.Contains(t, fieldsOf(t, err), "cdrs")
	_, err = e.cdrs.IngestBatch(ctx, make([]cdrs.Spec, cdrs.MaxBatch+1))
	require.Contains(t, fieldsOf(t, err), "cdrs")
}

// A batch mixing stored and new CDRs inside a caller's transaction: the
// stored ones are skipped without an error aborting the transaction.
func TestIngestBatchInTransaction(t *testing.T) {
	t.Parallel()
	bothModes(t, "UTC", func(t *testing.T, e *env) {
		ctx := context.Background()
		e.worked()
		start := utc("2025-03-01T10:00:00Z")
		first := e.ingest(answered(1, "+442071838750", start, 3, 47))
		err := e.db.Transaction(func(tx *gorm.DB) error {
			s := &cdrs.Store{DB: tx, Tenant: e.cdrs.Tenant}
			res, err := s.IngestBatch(ctx, []cdrs.Spec{answered(1, "+442071838750", start, 3, 47), missed(2, "+4420", start, 5)})
			if err != nil {
				return err
			}
			require.False(t, res[0].Created)
			require.Equal(t, first.CDR.ID, res[0].ID)
			require.Equal(t, "0.0246", res[0].Cost.StringFixed(4))
			require.True(t, res[1].Created)
			require.Equal(t, cdrs.NotAnswered, *res[1].UnratedReason)
			require.Nil(t, res[1].Cost)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, e.count())
	})
}

// A re-post of one CDR uses up one id, as docs/BILLING.md shows: the next
// CDR gets the id after it.
func TestRepostUsesOneID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationSchema, "UTC")
	start := utc("2025-03-01T10:00:00Z")
	first := e.ingest(missed(1, "+4420", start, 5))
	require.False(t, e.ingest(missed(1, "+4420", start, 5)).Created)
	next := e.ingest(missed(2, "+4420", start, 5))
	require.Equal(t, first.CDR.ID+2, next.CDR.ID)
}
