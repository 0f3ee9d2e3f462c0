package cdrs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// Report groupings and how many local days one report may span in each:
// a year of days, a month of hours.
const (
	GroupDay  = "day"
	GroupHour = "hour"

	MaxDayReportDays  = 366
	MaxHourReportDays = 31
)

// Report is the call report of a period of local dates, per local day or
// hour in the tenant's timezone.
type Report struct {
	Timezone string `json:"timezone"`
	Group    string `json:"group"`
	From     string `json:"from"` // local date, included
	To       string `json:"to"`   // local date, included
	// Start and End are the period as instants: [start, end).
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Buckets []Bucket  `json:"buckets"`
}

// Bucket is one local day or hour, half-open [start, end). Every bucket of
// the period is listed, with zeros when it had no call, so a day that DST
// makes 23 or 25 hours long shows 23 or 25 hour buckets.
type Bucket struct {
	// LocalStart is the bucket's start on the tenant's wall clock, with the
	// UTC offset in effect (the repeated hour of a DST change shows twice,
	// with two offsets).
	LocalStart string    `json:"local_start"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Calls      int64     `json:"calls"`
	Answered   int64     `json:"answered"`
	Billsec    int64     `json:"billsec"`
	// Cost sums the rated calls; unrated calls add nothing.
	Cost rates.Money `json:"cost"`
	// AvgAnswerDelay is the mean of answer_at − start_at over answered
	// calls, in seconds (3 decimals); null when none was answered.
	AvgAnswerDelay *json.Number `json:"avg_answer_delay"`
}

// reportSQL computes the buckets and their figures in one statement. (Its
// named parameters are written CAST(@x AS t): gorm ends a name at a space
// or a parenthesis, not at "::".)
//
// Buckets are what date_trunc(unit, instant, tz) groups together, so calls
// and buckets agree by construction. A bucket's start is its first instant:
// every zone's offsets and transitions fall on UTC quarter hours, so a
// 15-minute grid over the period meets each bucket at its start. (The start
// is not date_trunc's own value: where a change of offset is not a whole
// hour, as on Australia/Lord_Howe's 30-minute DST, date_trunc labels the
// hour after it with an instant inside the hour before.) A bucket ends
// where the next one starts; the last ends with the period.
const reportSQL = `
WITH bounds AS (
	SELECT CAST(@from AS date)::timestamp AT TIME ZONE @tz AS lo,
	       (CAST(@to AS date) + 1)::timestamp AT TIME ZONE @tz AS hi
), buckets AS (
	SELECT date_trunc(@unit, g, @tz) AS k, min(g) AS start
	FROM bounds, generate_series(lo, hi - interval '15 minutes', interval '15 minutes') AS g
	GROUP BY 1
), calls AS (
	SELECT date_trunc(@unit, start_at, @tz) AS k,
	       count(*) AS calls, count(answer_at) AS answered,
	       coalesce(sum(billsec), 0) AS billsec, coalesce(sum(cost), 0) AS cost,
	       round(avg(extract(epoch FROM answer_at - start_at))::numeric, 3) AS delay
	FROM %s, bounds
	WHERE start_at >= lo AND start_at < hi
	GROUP BY 1
)
SELECT b.start, coalesce(lead(b.start) OVER (ORDER BY b.start), bounds.hi) AS "end",
       b.start AT TIME ZONE @tz AS local_start,
       coalesce(c.calls, 0) AS calls, coalesce(c.answered, 0) AS answered,
       coalesce(c.billsec, 0) AS billsec, coalesce(c.cost, 0) AS cost, c.delay
FROM buckets b CROSS JOIN bounds LEFT JOIN calls c USING (k)
ORDER BY b.start`

// CallReport reports the calls that started between the local dates from
// and to (both included, YYYY-MM-DD) per local day or hour of the tenant's
// timezone: calls, answered, billsec, cost and average answer delay. Past
// calls are grouped by the timezone the tenant has now: changing it regroups
// them, the stored instants never change.
func (s *Store) CallReport(ctx context.Context, from, to, group string) (*Report, error) {
	if group == "" {
		group = GroupDay
	}
	fields := controlplane.FieldErrors{}
	f, t := localDate(fields, "from", from), localDate(fields, "to", to)
	maxDays := MaxDayReportDays
	switch group {
	case GroupDay:
	case GroupHour:
		maxDays = MaxHourReportDays
	default:
		fields.Add("group", "must be one of: day, hour")
	}
	if len(fields) == 0 {
		switch days := int(t.Sub(f)/(24*time.Hour)) + 1; {
		case days < 1:
			fields.Add("to", "must not be before from")
		case days > maxDays:
			fields.Add("to", fmt.Sprintf("must be at most %d days after from for group=%s", maxDays-1, group))
		}
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	rep := &Report{Timezone: s.Tenant.Timezone, Group: group, From: from, To: to, Buckets: []Bucket{}}
	var rows []struct {
		Start, End, LocalStart time.Time
		Calls, Answered        int64
		Billsec                int64
		Cost                   decimal.Decimal
		Delay                  decimal.NullDecimal
	}
	args := map[string]any{"from": from, "to": to, "tz": s.Tenant.Timezone, "unit": group}
	if err := s.DB.WithContext(ctx).Raw(fmt.Sprintf(reportSQL, query.Table(s.DB, "cdrs")), args).Scan(&rows).Error; err != nil {
		return nil, translate(err)
	}
	for _, r := range rows {
		b := Bucket{
			LocalStart: wallClock(r.LocalStart, r.Start), Start: r.Start.UTC(), End: r.End.UTC(),
			Calls: r.Calls, Answered: r.Answered, Billsec: r.Billsec, Cost: rates.NewMoney(r.Cost, rates.CostScale),
		}
		if r.Delay.Valid {
			n := json.Number(r.Delay.Decimal.StringFixed(3))
			b.AvgAnswerDelay = &n
		}
		rep.Buckets = append(rep.Buckets, b)
	}
	if len(rows) > 0 {
		rep.Start, rep.End = rep.Buckets[0].Start, rep.Buckets[len(rep.Buckets)-1].End
	}
	return rep, nil
}

// localDate parses a required YYYY-MM-DD.
func localDate(fields controlplane.FieldErrors, name, s string) time.Time {
	if s == "" {
		fields.Add(name, "is required (a local date YYYY-MM-DD)")
		return time.Time{}
	}
	d, ok := parseDate(s)
	if !ok {
		fields.Add(name, "must be a local date YYYY-MM-DD in the tenant's timezone")
	}
	return d
}

// wallClock writes the wall-clock time local (as PostgreSQL computed it,
// with the tenant's zone rules) with the offset it has at instant at, in
// RFC 3339: 2025-11-02T01:00:00-05:00.
func wallClock(local, at time.Time) string {
	off := int(local.Sub(at.UTC()) / time.Second)
	sign := '+'
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("%s%c%02d:%02d", local.Format("2006-01-02T15:04:05"), sign, off/3600, off%3600/60)
}
