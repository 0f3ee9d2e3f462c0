package query

import "gorm.io/gorm"

// Page runs a list query: the total of rows q selects, and one page of them
// in the given order (which must end in a unique column, so pages are
// stable). q is a Model query with its filters; it is cloned for each of
// the two statements, so gorm's statement state does not leak between them.
func Page[R any](q *gorm.DB, order string, limit, offset int) ([]R, int, error) {
	q = q.Session(&gorm.Session{})
	var total int64
	if err := q.Count(&total).Error; err != nil {
		return nil, 0, err
	}
	var rows []R
	if err := q.Order(order).Limit(limit).Offset(offset).Find(&rows).Error; err != nil {
		return nil, 0, err
	}
	return rows, int(total), nil
}

// Map converts rows with fn, e.g. table rows into API objects.
func Map[R, T any](rows []R, fn func(*R) T) []T {
	out := make([]T, len(rows))
	for i := range rows {
		out[i] = fn(&rows[i])
	}
	return out
}
