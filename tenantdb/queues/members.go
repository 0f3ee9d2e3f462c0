package queues

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// Members lists a queue's members by level, then position, then number.
func (s *Store) Members(ctx context.Context, queueID int64) ([]Member, error) {
	var out []Member
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := s.mustExist(tx, queueID); err != nil {
			return err
		}
		var err error
		out, err = members(tx, queueID)
		return err
	})
	if err != nil {
		return nil, translate(err, "queue", queueID)
	}
	return out, nil
}

// AddMember adds one extension to a queue. The extension must be this
// tenant's: the foreign key can only see this tenant's extensions.
func (s *Store) AddMember(ctx context.Context, queueID int64, spec MemberSpec) (*Member, error) {
	if err := controlplane.ValidateStruct(&spec); err != nil {
		return nil, err
	}
	var out *Member
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := s.mustExist(tx, queueID); err != nil {
			return err
		}
		t := query.Now()
		if err := tx.Create(&queueMember{QueueID: queueID, ExtensionID: spec.ExtensionID, Level: spec.Level, Position: spec.Position, CreatedAt: t, UpdatedAt: t}).Error; err != nil {
			return err
		}
		all, err := members(tx, queueID)
		for i := range all {
			if all[i].ExtensionID == spec.ExtensionID {
				out = &all[i]
			}
		}
		return err
	})
	if err != nil {
		return nil, translate(err, "queue", queueID)
	}
	return out, nil
}

// ReplaceMembers sets a queue's whole member list at once (PUT), in one
// transaction: either every member is valid and the list is replaced, or
// nothing changes. Errors name the entry: members[2].extension_id.
func (s *Store) ReplaceMembers(ctx context.Context, queueID int64, specs []MemberSpec) ([]Member, error) {
	fields := controlplane.FieldErrors{}
	seen := map[int64]bool{}
	for i := range specs {
		if err := controlplane.ValidateStruct(&specs[i]); err != nil {
			for f, reason := range err.(*controlplane.Error).Fields {
				fields.Add(fmt.Sprintf("members[%d].%s", i, f), reason)
			}
		}
		if seen[specs[i].ExtensionID] {
			fields.Add(fmt.Sprintf("members[%d].extension_id", i), "is listed twice")
		}
		seen[specs[i].ExtensionID] = true
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	var out []Member
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		if err := s.mustExist(tx, queueID); err != nil {
			return err
		}
		if err := tx.Where("queue_id = ?", queueID).Delete(&queueMember{}).Error; err != nil {
			return err
		}
		t := query.Now()
		for i, m := range specs {
			row := queueMember{QueueID: queueID, ExtensionID: m.ExtensionID, Level: m.Level, Position: m.Position, CreatedAt: t, UpdatedAt: t}
			if err := tx.Create(&row).Error; err != nil {
				return prefixFields(translate(err, "queue", queueID), fmt.Sprintf("members[%d].", i))
			}
		}
		var err error
		out, err = members(tx, queueID)
		return err
	})
	if err != nil {
		return nil, translate(err, "queue", queueID)
	}
	return out, nil
}

// RemoveMember takes an extension out of a queue.
func (s *Store) RemoveMember(ctx context.Context, queueID, extensionID int64) error {
	res := s.DB.WithContext(ctx).Where("queue_id = ? AND extension_id = ?", queueID, extensionID).Delete(&queueMember{})
	return query.Deleted(res, func(err error) error { return translate(err, "queue", queueID) },
		fmt.Sprintf("membership of extension %d in queue %d", extensionID, queueID))
}

func (s *Store) mustExist(tx *gorm.DB, queueID int64) error {
	var n int64
	if err := tx.Model(&queue{}).Where("id = ?", queueID).Count(&n).Error; err != nil {
		return err
	}
	if n == 0 {
		return controlplane.Errorf(controlplane.NotFound, "queue %d not found", queueID)
	}
	return nil
}

func members(tx *gorm.DB, queueID int64) ([]Member, error) {
	out := []Member{}
	err := tx.Raw(`SELECT m.extension_id, e.number, m.level, m.position FROM `+query.Table(tx, "queue_members")+` m
		JOIN `+query.Table(tx, "extensions")+` e ON e.id = m.extension_id
		WHERE m.queue_id = ? ORDER BY m.level, m.position, e.number`, queueID).Scan(&out).Error
	return out, err
}

// prefixFields renames the fields of a domain error (extension_id →
// members[2].extension_id) so a list error names its entry.
func prefixFields(err error, prefix string) error {
	de, ok := err.(*controlplane.Error)
	if !ok || len(de.Fields) == 0 {
		return err
	}
	fields := map[string]string{}
	for k, v := range de.Fields {
		fields[prefix+k] = v
	}
	return &controlplane.Error{Code: de.Code, Message: prefix + de.Message, Fields: fields, Err: de.Err}
}
