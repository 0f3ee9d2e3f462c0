package migrations

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	mdatabase "github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// Table is the name of the migrations table golang-migrate keeps in the
// catalog database and in every tenant database or schema.
const Table = "schema_migrations"

// Target is where a run's migrations table lives and which advisory lock
// guards it.
type Target struct {
	// Schema holds the migrations table ("" = the connection's current
	// schema, public in a tenant database).
	Schema string
	// LockDatabase is the database name golang-migrate computes its lock id
	// from ("" = current_database()). Tenant runs pass CLILockName(db), the
	// name the stock CLI uses, so the two exclude each other.
	LockDatabase string
}

// CLILockName is the database name the stock golang-migrate CLI hashes into
// its advisory lock id: its postgres and pgx drivers, opened from a URL,
// take the URL's path ("/tenant_1"), not current_database() ("tenant_1").
// Locking under this name makes `migrate -database postgres://…/tenant_1`
// and the control plane wait for each other on a tenant.
func CLILockName(database string) string { return "/" + database }

// LockIDs are the advisory lock ids of the migrations table in schema of
// database: the stock CLI's (see CLILockName), taken first, and the one
// this project took before it matched the CLI, still taken so that a
// binary of an older release, during a rolling upgrade, is excluded too.
func LockIDs(database, schema string) (cli, legacy int64) {
	parse := func(name string) int64 {
		id, err := mdatabase.GenerateAdvisoryLockId(name, schema, Table)
		if err != nil {
			panic(err) // it never fails: a CRC of the names
		}
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			panic(err) // a uint32 always fits
		}
		return n
	}
	return parse(CLILockName(database)), parse(database)
}

// Open returns a golang-migrate runner applying src to db at target.
// Closing the runner closes db as well, so db should be a pool made for
// this run alone.
func Open(db *sql.DB, src fs.FS, target Target) (*migrate.Migrate, error) {
	source, err := iofs.New(src, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{
		MigrationsTable: Table,
		SchemaName:      target.Schema,
		DatabaseName:    target.LockDatabase,
	})
	if err != nil {
		_ = source.Close()
		return nil, fmt.Errorf("open migration driver: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", source, "pgx5", driver)
	if err != nil {
		_ = source.Close()
		_ = driver.Close()
		return nil, err
	}
	return m, nil
}

// Up applies every pending migration of src to db at target and returns
// the version reached. It closes db. Having nothing to do is not an error.
func Up(db *sql.DB, src fs.FS, target Target) (uint, error) {
	m, err := Open(db, src, target)
	if err != nil {
		_ = db.Close()
		return 0, err
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return 0, err
	}
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if dirty {
		return v, fmt.Errorf("migration %d is dirty", v)
	}
	return v, nil
}

// Latest returns the highest migration version in src, 0 when it has none.
func Latest(src fs.FS) (uint, error) {
	source, err := iofs.New(src, ".")
	if err != nil {
		return 0, err
	}
	defer source.Close()
	v, err := source.First()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	for {
		next, err := source.Next(v)
		if errors.Is(err, fs.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, err
		}
		v = next
	}
}

// History is every up migration of a source, in order, ready to be applied
// in one go to an empty database or schema.
type History struct {
	Latest uint
	// Script is the up files concatenated, each ending with a newline.
	Script string
	// Transactional is false when a file cannot run inside a transaction
	// (CREATE INDEX CONCURRENTLY and the like): such a history must be
	// applied file by file by golang-migrate.
	Transactional bool
	// Hash identifies the history's content (names and SQL).
	Hash string
	// Files are the up migrations, in order.
	Files []File
}

// File is one up migration.
type File struct {
	Version       uint
	SQL           string
	Transactional bool
	// DownTransactional says the same of its down file (true when there
	// is none: nothing of it can be half applied).
	DownTransactional bool
}

// Before is the version before v in h (-1: none), and whether v's up file
// runs in a transaction; After is the version after v and whether its
// down file does (ok false: none after v). They say where a tenant left
// dirty at v really is: a failed up of v leaves the schema at Before(v), a
// failed down to v at After(v), when that file ran in a transaction.
func (h *History) Before(v uint) (prev int64, transactional bool) {
	prev = -1
	for _, f := range h.Files {
		if f.Version < v {
			prev = int64(f.Version)
		}
		if f.Version == v {
			transactional = f.Transactional
		}
	}
	return prev, transactional
}

// After: see Before.
func (h *History) After(v uint) (next int64, transactional, ok bool) {
	for _, f := range h.Files {
		if f.Version > v {
			return int64(f.Version), f.DownTransactional, true
		}
	}
	return 0, false, false
}

// Versions are the versions of h's files, in order.
func (h *History) Versions() []uint {
	out := make([]uint, len(h.Files))
	for i, f := range h.Files {
		out[i] = f.Version
	}
	return out
}

// nonTransactional spots statements PostgreSQL refuses inside a
// transaction block, or explicit transaction control in a file.
var nonTransactional = regexp.MustCompile(`(?i)\b(CONCURRENTLY|VACUUM|ALTER\s+SYSTEM|BEGIN|COMMIT|ROLLBACK)\b`)

// ReadHistory reads src's up migrations.
func ReadHistory(src fs.FS) (*History, error) {
	entries, err := fs.ReadDir(src, ".")
	if err != nil {
		return nil, err
	}
	type up struct {
		version uint
		name    string
	}
	var ups []up
	downs := map[uint]string{}
	for _, e := range entries {
		m, err := source.Parse(e.Name())
		if err != nil {
			continue
		}
		if m.Direction == source.Down {
			downs[m.Version] = e.Name()
			continue
		}
		ups = append(ups, up{m.Version, e.Name()})
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].version < ups[j].version })
	h := &History{Transactional: true}
	sum := sha256.New()
	var script strings.Builder
	for _, u := range ups {
		data, err := fs.ReadFile(src, u.name)
		if err != nil {
			return nil, err
		}
		tx := !nonTransactional.Match(data)
		h.Transactional = h.Transactional && tx
		downTx := true
		if name, ok := downs[u.version]; ok {
			down, err := fs.ReadFile(src, name)
			if err != nil {
				return nil, err
			}
			downTx = !nonTransactional.Match(down)
		}
		h.Files = append(h.Files, File{Version: u.version, SQL: string(data), Transactional: tx, DownTransactional: downTx})
		fmt.Fprintf(sum, "%s\x00%s\x00", u.name, data)
		script.Write(data)
		script.WriteString("\n")
		h.Latest = u.version
	}
	h.Script = script.String()
	h.Hash = hex.EncodeToString(sum.Sum(nil))
	return h, nil
}

// migrationName is what a migration's name may be: lower-case words of
// letters and digits joined by underscores.
var migrationName = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// Create writes the next numbered up/down pair of migrations in dir (the
// highest version there, plus one, six digits: golang-migrate's
// NNNNNN_name.up.sql and .down.sql) and returns their paths. It refuses a
// name that is not lower-case words joined by underscores, and never
// overwrites a file.
func Create(dir, name string) (up, down string, err error) {
	if !migrationName.MatchString(name) {
		return "", "", fmt.Errorf("a migration's name is lower-case letters and digits in words joined by underscores (e.g. extension_department), not %q", name)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("read %s (run it from the checkout's root, or give --dir): %w", dir, err)
	}
	var next uint = 1
	for _, e := range entries {
		if m, err := source.Parse(e.Name()); err == nil && m.Version >= next {
			next = m.Version + 1
		}
	}
	base := filepath.Join(dir, fmt.Sprintf("%06d_%s", next, name))
	up, down = base+".up.sql", base+".down.sql"
	header := "-- %s %d: %s (docs/MIGRATIONS.md says what a migration may do).\n"
	for _, f := range []struct{ path, dir string }{{up, "up"}, {down, "down"}} {
		file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return "", "", err
		}
		_, werr := fmt.Fprintf(file, header, f.dir, next, strings.ReplaceAll(name, "_", " "))
		if err := errors.Join(werr, file.Close()); err != nil {
			return "", "", err
		}
	}
	return up, down, nil
}
