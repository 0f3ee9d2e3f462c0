package catalog

import (
	"context"
	"encoding/json"
	"time"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

// auditRow is the audit_log table (migrations/catalog/000004).
type auditRow struct {
	ID       int64
	At       time.Time
	Actor    string
	Action   string
	TenantID *int64
	Target   string
	Diff     string `gorm:"type:jsonb"`
}

func (auditRow) TableName() string { return "audit_log" }

// audit writes an entry in tx, so the action and its record commit
// together or not at all. The actor comes from ctx.
func audit(ctx context.Context, tx *gorm.DB, action string, tenantID int64, target string, diff map[string]controlplane.Change) error {
	if diff == nil {
		diff = map[string]controlplane.Change{}
	}
	raw, err := json.Marshal(diff)
	if err != nil {
		return err
	}
	var tid *int64
	if tenantID != 0 {
		tid = &tenantID
	}
	return tx.Create(&auditRow{At: time.Now(), Actor: controlplane.ActorFrom(ctx), Action: action, TenantID: tid, Target: target, Diff: string(raw)}).Error
}

// Record appends an entry outside any other change.
func (s *Store) Record(ctx context.Context, action string, tenantID int64, target string, diff map[string]controlplane.Change) error {
	return translate(audit(ctx, s.db.WithContext(ctx), action, tenantID, target, diff))
}

// Audit lists entries, newest first, and the total.
func (s *Store) Audit(ctx context.Context, f controlplane.AuditFilter) ([]controlplane.AuditEntry, int, error) {
	q := s.db.WithContext(ctx).Model(&auditRow{})
	if f.TenantID != nil {
		q = q.Where("tenant_id = ?", *f.TenantID)
	}
	var total int64
	if err := q.Count(&total).Error; err != nil {
		return nil, 0, translate(err)
	}
	var rows []auditRow
	if err := q.Order("id DESC").Limit(f.Limit).Offset(f.Offset).Find(&rows).Error; err != nil {
		return nil, 0, translate(err)
	}
	out := make([]controlplane.AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = controlplane.AuditEntry{ID: r.ID, At: r.At, Actor: r.Actor, Action: r.Action, TenantID: r.TenantID, Target: r.Target}
		if err := json.Unmarshal([]byte(r.Diff), &out[i].Diff); err != nil {
			return nil, 0, translate(err)
		}
	}
	return out, int(total), nil
}
