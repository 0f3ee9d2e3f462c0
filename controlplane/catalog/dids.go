package catalog

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
)

var _ controlplane.DIDIndex = (*Store)(nil)

// didRow is the did_numbers table (see migrations/catalog/000002).
type didRow struct {
	Number     string `gorm:"primaryKey"`
	TenantID   int64
	TargetType string
	TargetID   *int64
	State      string
	UpdatedAt  time.Time
}

func (didRow) TableName() string { return "did_numbers" }

func (r *didRow) entry() controlplane.DIDEntry {
	return controlplane.DIDEntry{Number: r.Number, TenantID: r.TenantID, State: controlplane.DIDState(r.State),
		Target: controlplane.DIDTarget{Type: r.TargetType, ID: r.TargetID}, UpdatedAt: r.UpdatedAt}
}

var didConstraints = sqlerr.Register(sqlerr.Catalog, map[string]sqlerr.Constraint{
	"did_numbers_pkey":          {Field: "number", Reason: "is already assigned to a tenant"},
	"did_numbers_number_format": {Field: "number", Reason: "must be an E.164 number"},
})

// ClaimDID inserts the number in state creating; the primary key makes
// exactly one of two racing tenants win.
func (s *Store) ClaimDID(ctx context.Context, tenantID int64, number string, target controlplane.DIDTarget) error {
	row := didRow{Number: number, TenantID: tenantID, TargetType: target.Type, TargetID: target.ID, State: string(controlplane.DIDCreating), UpdatedAt: time.Now()}
	return sqlerr.Translate(s.db.WithContext(ctx).Create(&row).Error, didConstraints)
}

// BeginDIDChange marks an active number as changing, under its row lock.
func (s *Store) BeginDIDChange(ctx context.Context, tenantID int64, number string, state controlplane.DIDState, target controlplane.DIDTarget) (controlplane.DIDTarget, error) {
	var prev controlplane.DIDTarget
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row didRow
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("number = ? AND tenant_id = ?", number, tenantID).First(&row).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return controlplane.Errorf(controlplane.NotFound, "DID %s is not in the index of this tenant", number)
		}
		if err != nil {
			return err
		}
		if row.State != string(controlplane.DIDActive) {
			return controlplane.Errorf(controlplane.Conflict, "DID %s is being changed by another request; retry shortly", number)
		}
		prev = controlplane.DIDTarget{Type: row.TargetType, ID: row.TargetID}
		return tx.Model(&row).Updates(map[string]any{"state": string(state), "target_type": target.Type, "target_id": target.ID, "updated_at": time.Now()}).Error
	})
	return prev, sqlerr.Translate(err, didConstraints)
}

// SettleDID makes the number active with its final target.
func (s *Store) SettleDID(ctx context.Context, number string, target controlplane.DIDTarget) error {
	err := s.db.WithContext(ctx).Model(&didRow{Number: number}).Updates(map[string]any{
		"state": string(controlplane.DIDActive), "target_type": target.Type, "target_id": target.ID, "updated_at": time.Now(),
	}).Error
	return sqlerr.Translate(err, didConstraints)
}

// ReleaseDID removes the number from the index.
func (s *Store) ReleaseDID(ctx context.Context, number string) error {
	return sqlerr.Translate(s.db.WithContext(ctx).Delete(&didRow{Number: number}).Error, didConstraints)
}

// LookupDID answers where a call to number goes: one primary-key probe
// joined to the tenant's row. A number whose creation is still in flight is
// not routed yet; one being re-pointed routes to its new target.
func (s *Store) LookupDID(ctx context.Context, number string) (*controlplane.DIDRoute, error) {
	var r struct {
		TenantID   int64
		Slug       string
		Domain     string
		Status     string
		TargetType string
		TargetID   *int64
	}
	err := s.db.WithContext(ctx).Raw(`SELECT d.tenant_id, t.slug, t.domain, t.status, d.target_type, d.target_id
		FROM did_numbers d JOIN tenants t ON t.id = d.tenant_id
		WHERE d.number = ? AND d.state IN ('active', 'updating') AND t.status <> 'deleted'`, number).Scan(&r).Error
	if err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	if r.TenantID == 0 {
		return nil, controlplane.Errorf(controlplane.NotFound, "no tenant has the DID %s", number)
	}
	return &controlplane.DIDRoute{
		Number:    number,
		Tenant:    controlplane.DIDRouteTenant{ID: r.TenantID, Slug: r.Slug, Domain: r.Domain, Status: controlplane.Status(r.Status)},
		DIDTarget: controlplane.DIDTarget{Type: r.TargetType, ID: r.TargetID},
	}, nil
}

// UnsettledDIDs returns the rows left in flight since before olderThan.
func (s *Store) UnsettledDIDs(ctx context.Context, olderThan time.Time) ([]controlplane.DIDEntry, error) {
	var rows []didRow
	err := s.db.WithContext(ctx).Where("state <> 'active' AND updated_at < ?", olderThan).Order("updated_at").Find(&rows).Error
	if err != nil {
		return nil, sqlerr.Translate(err, nil)
	}
	out := make([]controlplane.DIDEntry, len(rows))
	for i := range rows {
		out[i] = rows[i].entry()
	}
	return out, nil
}
