// Package migrations holds the SQL that shapes the catalog database and every
// tenant database (or schema), embedded into the binary so a deployed
// control plane always carries exactly the migrations it was built with.
//
// Files follow golang-migrate's naming: NNNNNN_title.up.sql / .down.sql. A
// file runs as one implicit transaction; a statement that cannot run inside a
// transaction (CREATE INDEX CONCURRENTLY) gets a file of its own.
package migrations

import (
	"embed"
	"io/fs"
	"testing/fstest"
)

//go:embed catalog/*.sql tenant/*.sql
var files embed.FS

// Catalog is the migration source of the catalog database.
var Catalog = mustSub("catalog")

// Tenant is the migration source applied to every tenant database or schema.
var Tenant = mustSub("tenant")

func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // unreachable: the directory is embedded above
	}
	return sub
}

// TenantPlus is the tenant history with extra files (name → SQL) added, as
// a later release would ship them: for tests and benchmarks of migrations
// beyond the current history.
func TenantPlus(extra map[string]string) (fstest.MapFS, error) {
	out := fstest.MapFS{}
	entries, err := fs.ReadDir(Tenant, ".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := fs.ReadFile(Tenant, e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = &fstest.MapFile{Data: data}
	}
	for name, sql := range extra {
		out[name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return out, nil
}
