package httpapi

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/cdrs"
	"github.com/laracopilot/controlplane/tenantdb/contacts"
	"github.com/laracopilot/controlplane/tenantdb/dids"
	"github.com/laracopilot/controlplane/tenantdb/extensions"
	"github.com/laracopilot/controlplane/tenantdb/queues"
	"github.com/laracopilot/controlplane/tenantdb/rates"
)

// TestOpenAPISchemasMatchGoTypes holds each schema of docs/openapi.yaml to
// the Go type the server encodes or decodes with it: the same JSON field
// names (json tags, embedded structs flattened), and for what the server
// sends, a field is required in the spec exactly when Go always writes it
// (no omitempty). The end-to-end tests validate the responses they see;
// this also covers the fields they never make appear (held_until,
// backup_id) and the request bodies, which are not validated there.
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	doc := loadSpec(t)
	responses := map[string]any{
		"CreatedTenant":   createdTenant{},
		"TenantFields":    controlplane.Tenant{},
		"TenantPage":      page[controlplane.Tenant]{},
		"APIKeyFields":    controlplane.APIKey{},
		"NewAPIKey":       controlplane.NewAPIKey{},
		"AuditEntry":      controlplane.AuditEntry{},
		"AuditPage":       page[controlplane.AuditEntry]{},
		"MigrationStatus": migrationStatus{},
		"Server":          controlplane.Server{},
		"Operation":       controlplane.Operation{},
		"Backup":          controlplane.Backup{},
		"DIDRoute":        controlplane.DIDRoute{},
		"Error":           errorBody{},
		"Extension":       extensions.Extension{},
		"ExtensionPage":   page[extensions.Extension]{},
		"Queue":           queues.Queue{},
		"QueuePage":       page[queues.Queue]{},
		"Member":          queues.Member{},
		"MemberList":      memberList{},
		"Contact":         contacts.Contact{},
		"ContactPage":     page[contacts.Contact]{},
		"Phone":           contacts.Phone{},
		"ContactEmail":    contacts.Email{},
		"DID":             dids.DID{},
		"DIDPage":         page[dids.DID]{},
		"Rate":            rates.Rate{},
		"RatePage":        page[rates.Rate]{},
		"ImportResult":    importResult{},
		"CDR":             cdrs.CDR{},
		"CDRPage":         cdrs.Page{},
		"BatchResult":     cdrs.BatchResult{},
		"CDRBatchReply":   cdrBatchReply{},
		"Rerating":        cdrs.Rerating{},
		"CallReport":      cdrs.Report{},
		"ReportBucket":    cdrs.Bucket{},
	}
	requests := map[string]any{
		"TenantSpec":       controlplane.TenantSpec{},
		"TenantPatch":      controlplane.TenantPatch{},
		"KeySpec":          controlplane.KeySpec{},
		"ServerSpec":       controlplane.ServerSpec{},
		"ServerPatch":      controlplane.ServerPatch{},
		"RestoreRequest":   restoreRequest{},
		"MoveSpec":         controlplane.MoveSpec{},
		"ExtensionSpec":    extensions.Spec{},
		"ExtensionPatch":   extensions.Patch{},
		"QueueSpec":        queues.Spec{},
		"QueuePatch":       queues.Patch{},
		"MemberSpec":       queues.MemberSpec{},
		"MemberReplace":    memberReplace{},
		"ContactSpec":      contacts.Spec{},
		"ContactPatch":     contacts.Patch{},
		"PhoneSpec":        contacts.Phone{},
		"ContactEmailSpec": contacts.Email{},
		"DIDSpec":          dids.Spec{},
		"DIDPatch":         dids.Patch{},
		"RateSpec":         rates.Spec{},
		"RatePatch":        rates.Patch{},
		"CDRSpec":          cdrs.Spec{},
		"CDRBatch":         cdrBatch{},
	}
	check := func(name string, v any, response bool) {
		ref, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("docs/openapi.yaml has no schema %s", name)
			return
		}
		props, required := schemaFields(ref.Value)
		fields, always := jsonFields(reflect.TypeOf(v))
		if !slices.Equal(props, fields) {
			t.Errorf("schema %s has the properties %v, the Go type %T writes %v", name, props, v, fields)
		}
		if response && !slices.Equal(required, always) {
			t.Errorf("schema %s requires %v, the Go type %T always writes %v", name, required, v, always)
		}
	}
	for name, v := range responses {
		check(name, v, true)
	}
	for name, v := range requests {
		check(name, v, false)
	}
}

// schemaFields are a schema's property names and its required ones, its
// allOf members' included, each sorted.
func schemaFields(s *openapi3.Schema) (props, required []string) {
	for name := range s.Properties {
		props = append(props, name)
	}
	required = append(required, s.Required...)
	for _, sub := range s.AllOf {
		p, r := schemaFields(sub.Value)
		props, required = append(props, p...), append(required, r...)
	}
	sort.Strings(props)
	sort.Strings(required)
	return slices.Compact(props), slices.Compact(required)
}

// jsonFields are the JSON field names encoding/json gives t's fields
// (embedded structs flattened), and those it writes whatever their value
// (no omitempty), each sorted.
func jsonFields(t reflect.Type) (fields, always []string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fs, as := jsonFields(ft)
				fields, always = append(fields, fs...), append(always, as...)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		fields = append(fields, name)
		if !strings.Contains(","+opts+",", ",omitempty,") {
			always = append(always, name)
		}
	}
	sort.Strings(fields)
	sort.Strings(always)
	return fields, always
}
