// Package contacts is a tenant's CRM contacts: people and companies with
// their phone numbers and e-mail addresses, and the caller-ID lookup
// ("screen pop") that finds the contact of an inbound number.
package contacts

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// Contact is what the API returns.
type Contact struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Company   string    `json:"company"`
	Email     string    `json:"email"`
	Phones    []Phone   `json:"phones"`
	Emails    []Email   `json:"emails"`
	Tags      []string  `json:"tags"`
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Phone is one number of a contact. A number belongs to one contact of the
// tenant, so caller ID finds exactly one.
type Phone struct {
	Number string `json:"number" validate:"required,e164"`
	Label  string `json:"label" validate:"max=50"`
}

// Email is one more address of a contact, besides its primary email.
type Email struct {
	Email string `json:"email" validate:"required,email,max=254"`
	Label string `json:"label" validate:"max=50"`
}

// Spec is a create (POST) or replace (PUT): phones and emails given replace
// the contact's lists.
type Spec struct {
	Name    string   `json:"name" validate:"required,max=200"`
	Company string   `json:"company" validate:"max=200"`
	Email   string   `json:"email" validate:"omitempty,email,max=254"`
	Phones  []Phone  `json:"phones" validate:"max=50,dive"`
	Emails  []Email  `json:"emails" validate:"max=50,dive"`
	Tags    []string `json:"tags" validate:"max=50,dive,required,max=50"`
	Notes   string   `json:"notes" validate:"max=10000"`
}

// Patch is a partial update; a list that is present replaces the old one.
type Patch struct {
	Name    *string   `json:"name"`
	Company *string   `json:"company"`
	Email   *string   `json:"email"`
	Phones  *[]Phone  `json:"phones"`
	Emails  *[]Email  `json:"emails"`
	Tags    *[]string `json:"tags"`
	Notes   *string   `json:"notes"`
}

// Filter selects contacts: Query is a substring of name, company or an
// e-mail address; Phone an exact E.164 number (caller-ID lookup).
type Filter struct {
	Query, Phone  string
	Limit, Offset int
}

// textArray is a text[] column for gorm, read and written by pgx's own
// array codec (gorm's model fields go through database/sql).
type textArray []string

// typeMaps are pgx's type maps for textArray; a map memoizes its plans,
// so one is not for concurrent use.
var typeMaps = sync.Pool{New: func() any { return pgtype.NewMap() }}

// Scan reads PostgreSQL's text form of a text[] ({a,"b c"}).
func (a *textArray) Scan(src any) error {
	m := typeMaps.Get().(*pgtype.Map)
	defer typeMaps.Put(m)
	return m.SQLScanner((*[]string)(a)).Scan(src)
}

// Value writes it in that form.
func (a textArray) Value() (driver.Value, error) {
	if a == nil {
		a = textArray{}
	}
	m := typeMaps.Get().(*pgtype.Map)
	defer typeMaps.Put(m)
	buf, err := m.Encode(pgtype.TextArrayOID, pgtype.TextFormatCode, []string(a), nil)
	return string(buf), err
}

type contact struct {
	ID        int64
	Name      string
	Company   string
	Email     string
	Tags      textArray `gorm:"type:text[]"`
	Notes     string
	CreatedAt time.Time
	UpdatedAt time.Time `gorm:"autoUpdateTime:false"` // set at database precision by the store
}

func (contact) TableName(n schema.Namer) string { return n.TableName("Contact") }

type contactPhone struct {
	ID        int64
	ContactID int64
	Number    string
	Label     string
	CreatedAt time.Time
}

func (contactPhone) TableName(n schema.Namer) string { return n.TableName("ContactPhone") }

type contactEmail struct {
	ID        int64
	ContactID int64
	Email     string
	Label     string
	CreatedAt time.Time
}

func (contactEmail) TableName(n schema.Namer) string { return n.TableName("ContactEmail") }

// Store is one tenant's contacts.
type Store struct {
	DB     *gorm.DB
	Tenant *controlplane.Tenant
}

var constraints = sqlerr.Register(sqlerr.Tenant, map[string]sqlerr.Constraint{
	"contacts_name_not_empty":             {Field: "name", Reason: "is required"},
	"contact_phones_number_key":           {Field: "phones", Reason: "a number already belongs to another contact of this tenant"},
	"contact_phones_number_format":        {Field: "phones", Reason: "must be E.164 numbers"},
	"contact_emails_contact_id_email_key": {Field: "emails", Reason: "lists an address twice"},
	"contact_emails_email_format":         {Field: "emails", Reason: "must be e-mail addresses"},
})

func translate(err error, id int64) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return controlplane.Errorf(controlplane.NotFound, "contact %d not found", id)
	}
	return sqlerr.TranslateTenant(err, constraints)
}

// normalize canonicalises a spec before validation.
func (s *Spec) normalize() {
	s.Name = strings.TrimSpace(s.Name)
	s.Email = strings.TrimSpace(s.Email)
	for i := range s.Phones {
		s.Phones[i].Number = controlplane.NormalizeE164(s.Phones[i].Number)
	}
	for i := range s.Emails {
		s.Emails[i].Email = strings.TrimSpace(s.Emails[i].Email)
	}
	if s.Phones == nil {
		s.Phones = []Phone{}
	}
	if s.Emails == nil {
		s.Emails = []Email{}
	}
	if s.Tags == nil {
		s.Tags = []string{}
	}
}

// validate checks the spec, and that no number repeats inside it.
func (s *Spec) validate() error {
	s.normalize()
	if err := controlplane.ValidateStruct(s); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, p := range s.Phones {
		if seen[p.Number] {
			return controlplane.FieldError(fmt.Sprintf("phones[%d].number", i), "is listed twice")
		}
		seen[p.Number] = true
	}
	return nil
}

// Create adds a contact with its phones and e-mail addresses, atomically.
func (s *Store) Create(ctx context.Context, spec Spec) (*Contact, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	var out *Contact
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		t := query.Now()
		row := contact{Name: spec.Name, Company: spec.Company, Email: spec.Email, Tags: spec.Tags, Notes: spec.Notes, CreatedAt: t, UpdatedAt: t}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if err := writeLists(tx, row.ID, spec); err != nil {
			return err
		}
		out = public(&row, spec.Phones, spec.Emails)
		return nil
	})
	if err != nil {
		return nil, translate(err, 0)
	}
	return out, nil
}

// Get returns one contact with its lists.
func (s *Store) Get(ctx context.Context, id int64) (*Contact, error) {
	var row contact
	if err := s.DB.WithContext(ctx).First(&row, id).Error; err != nil {
		return nil, translate(err, id)
	}
	list, err := withLists(s.DB.WithContext(ctx), []contact{row})
	if err != nil {
		return nil, err
	}
	return &list[0], nil
}

// List returns a page of contacts matching f, ordered by name, and the
// total. A phone filter is the caller-ID lookup: one indexed probe.
func (s *Store) List(ctx context.Context, f Filter) ([]Contact, int, error) {
	q := s.DB.WithContext(ctx).Model(&contact{})
	if f.Phone != "" {
		phone := f.Phone
		// An unencoded "+" in a query string arrives as a space
		// (?phone=+1555...): read a leading space as the plus it was.
		if strings.HasPrefix(phone, " ") {
			phone = "+" + strings.TrimLeft(phone, " ")
		}
		q = q.Where("id IN (SELECT contact_id FROM "+query.Table(s.DB, "contact_phones")+" WHERE number = ?)", controlplane.NormalizeE164(phone))
	}
	if f.Query != "" {
		like := sqlerr.LikeContains(strings.ToLower(f.Query))
		q = q.Where("(lower(name) LIKE ? OR lower(company) LIKE ? OR lower(email) LIKE ? OR id IN (SELECT contact_id FROM "+
			query.Table(s.DB, "contact_emails")+" WHERE lower(email) LIKE ?))", like, like, like, like)
	}
	rows, total, err := query.Page[contact](q, "lower(name), id", f.Limit, f.Offset)
	if err != nil {
		return nil, 0, translate(err, 0)
	}
	out, err := withLists(s.DB.WithContext(ctx), rows)
	return out, total, err
}

// Replace sets every field of contact id (PUT).
func (s *Store) Replace(ctx context.Context, id int64, spec Spec) (*Contact, error) {
	return s.update(ctx, id, func(Spec) Spec { return spec })
}

// Patch changes the fields present in p (PATCH).
func (s *Store) Patch(ctx context.Context, id int64, p Patch) (*Contact, error) {
	return s.update(ctx, id, p.Apply)
}

func (s *Store) update(ctx context.Context, id int64, change func(Spec) Spec) (*Contact, error) {
	var out *Contact
	err := query.Tx(ctx, s.DB, func(tx *gorm.DB) error {
		var row contact
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).First(&row, id).Error; err != nil {
			return err
		}
		// In the transaction: read outside it, the lists would need a
		// second connection while this one is held (a tenant whose
		// requests may use one at a time would wait for itself), and
		// would not be read under the row's lock.
		cur, err := withLists(tx, []contact{row})
		if err != nil {
			return err
		}
		c := cur[0]
		spec := change(Spec{Name: c.Name, Company: c.Company, Email: c.Email, Phones: c.Phones, Emails: c.Emails, Tags: c.Tags, Notes: c.Notes})
		if err := spec.validate(); err != nil {
			return err
		}
		row.Name, row.Company, row.Email, row.Tags, row.Notes, row.UpdatedAt = spec.Name, spec.Company, spec.Email, spec.Tags, spec.Notes, query.Now()
		if err := tx.Select("*").Omit("id", "created_at").Updates(&row).Error; err != nil {
			return err
		}
		if err := tx.Where("contact_id = ?", id).Delete(&contactPhone{}).Error; err != nil {
			return err
		}
		if err := tx.Where("contact_id = ?", id).Delete(&contactEmail{}).Error; err != nil {
			return err
		}
		if err := writeLists(tx, id, spec); err != nil {
			return err
		}
		out = public(&row, spec.Phones, spec.Emails)
		return nil
	})
	if err != nil {
		return nil, translate(err, id)
	}
	return out, nil
}

// Delete removes a contact with its phones and addresses.
func (s *Store) Delete(ctx context.Context, id int64) error {
	res := s.DB.WithContext(ctx).Delete(&contact{}, id)
	return query.Deleted(res, func(err error) error { return translate(err, id) }, fmt.Sprintf("contact %d", id))
}

func writeLists(tx *gorm.DB, id int64, spec Spec) error {
	t := query.Now()
	if len(spec.Phones) > 0 {
		rows := make([]contactPhone, len(spec.Phones))
		for i, p := range spec.Phones {
			rows[i] = contactPhone{ContactID: id, Number: p.Number, Label: p.Label, CreatedAt: t}
		}
		if err := tx.Create(&rows).Error; err != nil {
			return err
		}
	}
	if len(spec.Emails) > 0 {
		rows := make([]contactEmail, len(spec.Emails))
		for i, e := range spec.Emails {
			rows[i] = contactEmail{ContactID: id, Email: e.Email, Label: e.Label, CreatedAt: t}
		}
		if err := tx.Create(&rows).Error; err != nil {
			return err
		}
	}
	return nil
}

// withLists loads the phones and addresses of rows in two queries.
func withLists(db *gorm.DB, rows []contact) ([]Contact, error) {
	ids := make([]int64, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	var phones []contactPhone
	var emails []contactEmail
	if len(ids) > 0 {
		if err := db.Where("contact_id IN ?", ids).Order("id").Find(&phones).Error; err != nil {
			return nil, translate(err, 0)
		}
		if err := db.Where("contact_id IN ?", ids).Order("id").Find(&emails).Error; err != nil {
			return nil, translate(err, 0)
		}
	}
	byPhone := map[int64][]Phone{}
	for _, p := range phones {
		byPhone[p.ContactID] = append(byPhone[p.ContactID], Phone{Number: p.Number, Label: p.Label})
	}
	byEmail := map[int64][]Email{}
	for _, e := range emails {
		byEmail[e.ContactID] = append(byEmail[e.ContactID], Email{Email: e.Email, Label: e.Label})
	}
	out := make([]Contact, len(rows))
	for i := range rows {
		out[i] = *public(&rows[i], byPhone[rows[i].ID], byEmail[rows[i].ID])
	}
	return out, nil
}

func public(r *contact, phones []Phone, emails []Email) *Contact {
	if phones == nil {
		phones = []Phone{}
	}
	if emails == nil {
		emails = []Email{}
	}
	tags := []string(r.Tags)
	if tags == nil {
		tags = []string{}
	}
	return &Contact{ID: r.ID, Name: r.Name, Company: r.Company, Email: r.Email, Phones: phones, Emails: emails, Tags: tags, Notes: r.Notes, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// Apply is cur with the fields p sends; phones, emails and tags sent
// replace the lists whole.
func (p Patch) Apply(cur Spec) Spec {
	controlplane.Set(&cur.Name, p.Name)
	controlplane.Set(&cur.Company, p.Company)
	controlplane.Set(&cur.Email, p.Email)
	controlplane.Set(&cur.Notes, p.Notes)
	controlplane.Set(&cur.Phones, p.Phones)
	controlplane.Set(&cur.Emails, p.Emails)
	controlplane.Set(&cur.Tags, p.Tags)
	return cur
}
