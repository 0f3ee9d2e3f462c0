package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/laracopilot/controlplane/controlplane"
)

var (
	backupScheduleDesc = prometheus.NewDesc("controlplane_backup_schedule_seconds",
		"BACKUP_SCHEDULE: how often each ready tenant gets a scheduled backup; 0 when no schedule is set.", nil, nil)
	backupOldestDesc = prometheus.NewDesc("controlplane_backup_oldest_age_seconds",
		"Age of the stalest ready tenant's newest ready backup (its creation, if it has none). Only with a schedule.", nil, nil)
	backupOverdueDesc = prometheus.NewDesc("controlplane_backups_overdue_tenants",
		"Ready tenants whose newest ready backup is older than twice BACKUP_SCHEDULE. Only with a schedule.", nil, nil)
)

// backupCollector reads the fleet's backup freshness from the catalog at
// scrape time: one aggregate query, bounded by a timeout so a slow catalog
// costs a scrape its backup series, not the whole scrape (catalog_up says
// why they are missing).
type backupCollector struct {
	ops *controlplane.Operations
}

func (b backupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backupScheduleDesc
	ch <- backupOldestDesc
	ch <- backupOverdueDesc
}

func (b backupCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(backupScheduleDesc, prometheus.GaugeValue, b.ops.Every.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f, ok, err := b.ops.Freshness(ctx)
	if !ok || err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(backupOldestDesc, prometheus.GaugeValue, f.Oldest.Seconds())
	ch <- prometheus.MustNewConstMetric(backupOverdueDesc, prometheus.GaugeValue, float64(f.Overdue))
}
