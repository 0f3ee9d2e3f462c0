package cdrs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
)

// span is a bucket's local start and its UTC boundaries.
type span struct{ local, start, end string }

func spans(r *cdrs.Report) []span {
	out := make([]span, len(r.Buckets))
	for i, b := range r.Buckets {
		out[i] = span{b.LocalStart, b.Start.Format(time.RFC3339), b.End.Format(time.RFC3339)}
	}
	return out
}

func calls(r *cdrs.Report) []int64 {
	out := make([]int64, len(r.Buckets))
	for i, b := range r.Buckets {
		out[i] = b.Calls
	}
	return out
}

// contiguous checks that buckets tile the period: each ends where the next
// starts, and returns the period's length.
func contiguous(t *testing.T, r *cdrs.Report) time.Duration {
	t.Helper()
	for i := 1; i < len(r.Buckets); i++ {
		require.Equal(t, r.Buckets[i-1].End, r.Buckets[i].Start)
	}
	require.Equal(t, r.Start, r.Buckets[0].Start)
	require.Equal(t, r.End, r.Buckets[len(r.Buckets)-1].End)
	return r.End.Sub(r.Start)
}

func (e *env) report(s *cdrs.Store, from, to, group string) *cdrs.Report {
	e.t.Helper()
	r, err := s.CallReport(context.Background(), from, to, group)
	require.NoError(e.t, err)
	return r
}

func TestReportNewYorkDST(t *testing.T) {
	t.Parallel()
	bothModes(t, "America/New_York", func(t *testing.T, e *env) {
		e.rate("1", "0.0100", "0", 60, 60, "2020-01-01T00:00:00Z", "")
		// Spring forward: 2025-03-09 has 23 hours.
		days := e.report(e.cdrs, "2025-03-08", "2025-03-10", "day")
		require.Equal(t, []span{
			{"2025-03-08T00:00:00-05:00", "2025-03-08T05:00:00Z", "2025-03-09T05:00:00Z"},
			{"2025-03-09T00:00:00-05:00", "2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z"},
			{"2025-03-10T00:00:00-04:00", "2025-03-10T04:00:00Z", "2025-03-11T04:00:00Z"},
		}, spans(days))
		hours := e.report(e.cdrs, "2025-03-09", "2025-03-09", "hour")
		require.Len(t, hours.Buckets, 23)
		require.Equal(t, 23*time.Hour, contiguous(t, hours))
		require.Equal(t, span{"2025-03-09T01:00:00-05:00", "2025-03-09T06:00:00Z", "2025-03-09T07:00:00Z"}, spans(hours)[1])
		require.Equal(t, span{"2025-03-09T03:00:00-04:00", "2025-03-09T07:00:00Z", "2025-03-09T08:00:00Z"}, spans(hours)[2], "02:00 does not exist")

		// Fall back: 2025-11-02 has 25 hours, 01:00 twice.
		e.ingest(answered(1, "+15551234567", utc("2025-11-02T03:59:59.999999Z"), 2, 60)) // Nov 1, 23:59:59.999999 EDT
		e.ingest(answered(2, "+15551234567", utc("2025-11-02T04:00:00Z"), 3, 60))        // Nov 2, 00:00 EDT: the day it starts
		e.ingest(answered(3, "+15551234567", utc("2025-11-02T05:30:00Z"), 6, 61))        // 01:30 EDT
		e.ingest(missed(4, "+15551234567", utc("2025-11-02T06:30:00Z"), 20))             // 01:30 EST
		e.ingest(answered(5, "+33123", utc("2025-11-02T06:45:00Z"), 1, 30))              // 01:45 EST, unrated
		hours = e.report(e.cdrs, "2025-11-02", "2025-11-02", "hour")
		require.Len(t, hours.Buckets, 25)
		require.Equal(t, 25*time.Hour, contiguous(t, hours))
		require.Equal(t, []span{
			{"2025-11-02T00:00:00-04:00", "2025-11-02T04:00:00Z", "2025-11-02T05:00:00Z"},
			{"2025-11-02T01:00:00-04:00", "2025-11-02T05:00:00Z", "2025-11-02T06:00:00Z"},
			{"2025-11-02T01:00:00-05:00", "2025-11-02T06:00:00Z", "2025-11-02T07:00:00Z"},
			{"2025-11-02T02:00:00-05:00", "2025-11-02T07:00:00Z", "2025-11-02T08:00:00Z"},
		}, spans(hours)[:4])
		require.Equal(t, []int64{1, 1, 2, 0}, calls(hours)[:4])

		days = e.report(e.cdrs, "2025-11-01", "2025-11-03", "day")
		require.Equal(t, []span{
			{"2025-11-01T00:00:00-04:00", "2025-11-01T04:00:00Z", "2025-11-02T04:00:00Z"},
			{"2025-11-02T00:00:00-04:00", "2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z"},
			{"2025-11-03T00:00:00-05:00", "2025-11-03T05:00:00Z", "2025-11-04T05:00:00Z"},
		}, spans(days))
		nov1, nov2, nov3 := days.Buckets[0], days.Buckets[1], days.Buckets[2]
		require.EqualValues(t, 1, nov1.Calls, "the call a microsecond before midnight is the day before's")
		require.EqualValues(t, 4, nov2.Calls, "the call at exactly 00:00:00 is its day's")
		require.EqualValues(t, 3, nov2.Answered)
		require.EqualValues(t, 60+61+30, nov2.Billsec)
		require.Equal(t, "0.0300", nov2.Cost.StringFixed(4), "0.0100 + 0.0200; the unrated call adds nothing")
		require.Equal(t, json.Number("3.333"), *nov2.AvgAnswerDelay, "(3 + 6 + 1) / 3 seconds")
		require.Zero(t, nov3.Calls, "empty days are listed")
		require.Nil(t, nov3.AvgAnswerDelay)
		out, err := json.Marshal(nov3)
		require.NoError(t, err)
		require.JSONEq(t, `{"local_start":"2025-11-03T00:00:00-05:00","start":"2025-11-03T05:00:00Z","end":"2025-11-04T05:00:00Z",
			"calls":0,"answered":0,"billsec":0,"cost":"0.0000","avg_answer_delay":null}`, string(out))
	})
}

func TestReportLordHowe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationSchema, "Australia/Lord_Howe")
	// DST ends 2025-04-06 at 02:00 (+11:00), clocks go back to 01:30 (+10:30).
	days := e.report(e.cdrs, "2025-04-06", "2025-04-06", "day")
	require.Equal(t, []span{{"2025-04-06T00:00:00+11:00", "2025-04-05T13:00:00Z", "2025-04-06T13:30:00Z"}}, spans(days))
	require.Equal(t, 24*time.Hour+30*time.Minute, contiguous(t, days))

	e.ingest(missed(1, "+61", utc("2025-04-05T14:45:00Z"), 5)) // 01:45 +11:00
	e.ingest(missed(2, "+61", utc("2025-04-05T15:15:00Z"), 5)) // 01:45 +10:30
	hours := e.report(e.cdrs, "2025-04-06", "2025-04-06", "hour")
	require.Equal(t, 24*time.Hour+30*time.Minute, contiguous(t, hours))
	require.Len(t, hours.Buckets, 25, "the repeated half hour is a bucket of its own")
	require.Equal(t, []span{
		{"2025-04-06T01:00:00+11:00", "2025-04-05T14:00:00Z", "2025-04-05T15:00:00Z"},
		{"2025-04-06T01:30:00+10:30", "2025-04-05T15:00:00Z", "2025-04-05T15:30:00Z"},
		{"2025-04-06T02:00:00+10:30", "2025-04-05T15:30:00Z", "2025-04-05T16:30:00Z"},
	}, spans(hours)[1:4])
	require.Equal(t, []int64{0, 1, 1, 0}, calls(hours)[:4])
}

func TestReportKolkata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationDatabase, "Asia/Kolkata")
	e.ingest(missed(1, "+91", utc("2025-06-01T05:45:00Z"), 5)) // 11:15 IST
	e.ingest(missed(2, "+91", utc("2025-06-01T06:00:00Z"), 5)) // 11:30 IST
	e.ingest(missed(3, "+91", utc("2025-06-01T06:30:00Z"), 5)) // 12:00 IST
	hours := e.report(e.cdrs, "2025-06-01", "2025-06-01", "hour")
	require.Len(t, hours.Buckets, 24)
	require.Equal(t, 24*time.Hour, contiguous(t, hours))
	require.Equal(t, span{"2025-06-01T00:00:00+05:30", "2025-05-31T18:30:00Z", "2025-05-31T19:30:00Z"}, spans(hours)[0])
	eleven, noon := hours.Buckets[11], hours.Buckets[12]
	require.Equal(t, "2025-06-01T05:30:00Z", eleven.Start.Format(time.RFC3339), "local hours start at :30 UTC")
	require.EqualValues(t, 2, eleven.Calls)
	require.EqualValues(t, 1, noon.Calls)
}

// Changing the tenant's timezone regroups past calls; their instants stay.
func TestReportFollowsTheTenantTimezone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationSchema, "UTC")
	e.ingest(missed(1, "+1", utc("2025-11-02T03:00:00Z"), 5))
	e.ingest(missed(2, "+1", utc("2025-11-02T05:00:00Z"), 5))
	utcDays := e.report(e.cdrs, "2025-11-01", "2025-11-02", "day")
	require.Equal(t, []int64{0, 2}, calls(utcDays))
	ny := e.inTZ("America/New_York")
	nyDays := e.report(ny, "2025-11-01", "2025-11-02", "day")
	require.Equal(t, []int64{1, 1}, calls(nyDays))
	require.Equal(t, "America/New_York", nyDays.Timezone)
	c, err := ny.Get(context.Background(), uuid(1))
	require.NoError(t, err)
	require.Equal(t, utc("2025-11-02T03:00:00Z"), c.StartAt)
}

func TestReportValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, controlplane.IsolationSchema, "UTC")
	r := e.report(e.cdrs, "2025-11-01", "2025-11-30", "")
	require.Equal(t, "day", r.Group, "day is the default")
	require.Len(t, r.Buckets, 30)
	require.Len(t, e.report(e.cdrs, "2024-01-01", "2024-12-31", "day").Buckets, 366)
	for _, tc := range []struct{ from, to, group, field string }{
		{"", "2025-11-30", "day", "from"},
		{"2025-11-01", "", "day", "to"},
		{"2025-11-01T00:00:00Z", "2025-11-30", "day", "from"},
		{"0000-01-01", "0000-01-02", "day", "from"},
		{"2025-11-01", "2025-11-30", "week", "group"},
		{"2025-11-30", "2025-11-01", "day", "to"},
		{"2025-01-01", "2026-01-02", "day", "to"},
		{"2025-01-01", "2025-02-01", "hour", "to"},
	} {
		_, err := e.cdrs.CallReport(context.Background(), tc.from, tc.to, tc.group)
		require.Contains(t, fieldsOf(t, err), tc.field, "%+v", tc)
	}
}
