package main

import (
	"database/sql"
	"regexp"
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/queues"
)

// Constraint names are a contract between the SQL and the Go code that
// maps them to API fields (sqlerr.Register): a constraint renamed in a
// migration would turn a 409 or 422 naming its field into an anonymous
// one, and nothing else would fail. Every name the code knows must exist
// in a migrated catalog and tenant; every unique and check rule of a
// tenant must be known to the code or listed here with why it needs no
// field; and the SQL CHECK of an enumeration allows exactly the Go list.
func TestConstraintContracts(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	tn := b.create(tenantBody("contracts", controlplane.IsolationDatabase))
	catalog := pgtest.Open(t, b.db.URL)
	tenant := pgtest.Open(t, pgtest.WithDatabase(t, b.db.URL, tn["db_name"].(string)))

	// Names the code uses outside the registered maps.
	used := map[sqlerr.Schema][]string{
		sqlerr.Tenant:  {"cdrs_uuid_key"},                  // cdrs/insert.go: ON CONFLICT ON CONSTRAINT, the idempotent ingest
		sqlerr.Catalog: {"tenant_api_keys_tenant_id_fkey"}, // catalog/keys.go: a key of a tenant deleted meanwhile
	}
	haves := map[sqlerr.Schema]map[string]string{sqlerr.Tenant: rules(t, tenant), sqlerr.Catalog: rules(t, catalog)}
	for schema, have := range haves {
		known := sqlerr.Registered(schema)
		require.NotEmpty(t, known, "nothing registered for %s", schema)
		for name := range known {
			require.Contains(t, have, name, "the %s database has no constraint or index %q, which the code maps to the field %q", schema, name, known[name].Field)
		}
		for _, name := range used[schema] {
			require.Contains(t, have, name, "the %s database has no constraint %q, which the code names", schema, name)
		}
		var unmapped []string
		for name, kind := range have {
			_, isKnown := known[name]
			_, why := fieldless[name]
			if !isKnown && !why && (kind == "u" || kind == "c" || kind == "unique index") {
				unmapped = append(unmapped, name+" ("+kind+")")
			}
		}
		sort.Strings(unmapped)
		require.Empty(t, unmapped, "unique and check rules of the %s database that no store maps to a field: map them (sqlerr.Register) or say here why no client can break them", schema)
	}
	for name := range fieldless {
		_, inTenant := haves[sqlerr.Tenant][name]
		_, inCatalog := haves[sqlerr.Catalog][name]
		require.True(t, inTenant || inCatalog, "%s is listed as needing no field but exists nowhere", name)
	}

	// The enumeration of queue strategies: the Go list is the rule; the
	// CHECK must allow exactly it.
	var def string
	require.NoError(t, tenant.QueryRow(`SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'queues_strategy_valid'`).Scan(&def))
	var inSQL []string
	for _, m := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(def, -1) {
		inSQL = append(inSQL, m[1])
	}
	slices.Sort(inSQL)
	want := slices.Sorted(slices.Values(queues.Strategies))
	require.Equal(t, want, inSQL, "queues_strategy_valid against queues.Strategies: %s", def)
}

// fieldless are the unique and check rules no client input can break
// (the code writes those columns itself, or checks the input earlier), so
// they map to no API field.
var fieldless = map[string]string{
	// A tenant's database.
	"cdrs_cost_nonnegative":        "the cost is computed by rating, never sent",
	"cdrs_uuid_key":                "a CDR posted again is skipped (ON CONFLICT ON CONSTRAINT, idempotent ingest)",
	"extensions_ha1_complete":      "the digests are computed from the password by the server",
	"extensions_ha1_md5_format":    "the digests are computed from the password by the server",
	"extensions_ha1_sha256_format": "the digests are computed from the password by the server",
	// The catalog: rows the control plane writes itself.
	"backups_path_key":                      "backup paths are made by the backup runner",
	"backups_state_check":                   "states are set by the backup runner",
	"catalog_identity_singleton_check":      "one row of the control plane's own",
	"did_numbers_state_check":               "the DID index's states are set by the DID intents",
	"did_numbers_target_type_check":         "copied from a tenant's DID, validated there",
	"idempotency_keys_fingerprint_length":   "a SHA-256 the server computes",
	"idempotency_keys_key_length":           "the Idempotency-Key header is checked first (controlplane/idempotency.go, 400)",
	"idempotency_keys_one_outcome":          "outcomes are recorded by the server",
	"operations_finished":                   "operations end through the runner",
	"operations_kind_check":                 "kinds are the runner's",
	"operations_state_check":                "states are the runner's",
	"servers_password_enc_length":           "a sealed password the server makes",
	"tenant_api_keys_hash_key":              "a hash of 32 random bytes the server draws",
	"tenant_role_passwords_singleton_check": "one row of the control plane's own",
	"tenant_role_secret_secret_check":       "a secret the server draws or TENANT_ROLE_SECRET, checked at start",
	"tenant_role_secret_singleton_check":    "one row of the control plane's own",
	"tenant_spares_db_name_key":             "spare names are made by the server",
	"tenant_spares_state_check":             "spare states are the server's",
	"tenants_db_name_key":                   "database names are derived from the tenant's id",
	"tenants_deleted_at":                    "set by delete and undelete together with the status",
	"tenants_provisioning_check":            "provisioning states are the server's",
}

// rules are the constraints (by kind: u, c, f, p, x) and the unique
// indexes that back no constraint, of the public schema of db.
func rules(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT conname, contype::text FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'
		UNION ALL SELECT x.relname, 'unique index' FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace n ON n.oid = x.relnamespace
			WHERE n.nspname = 'public' AND i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, kind string
		require.NoError(t, rows.Scan(&name, &kind))
		out[name] = kind
	}
	require.NoError(t, rows.Err())
	return out
}
