package migrations

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// Table is the name of the migrations table golang-migrate keeps in the
// catalog database and in every tenant database or schema.
const Table = "schema_migrations"

// Open returns a golang-migrate runner applying src to db. schema names the
// schema holding the migrations table ("" means the connection's current
// schema). Closing the runner closes db as well, so db should be a pool made
// for this run alone.
func Open(db *sql.DB, src fs.FS, schema string) (*migrate.Migrate, error) {
	source, err := iofs.New(src, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{
		MigrationsTable: Table,
		SchemaName:      schema,
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

// Up applies every pending migration of src to db and returns the version
// reached. It closes db. Having nothing to do is not an error.
func Up(db *sql.DB, src fs.FS, schema string) (uint, error) {
	m, err := Open(db, src, schema)
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
