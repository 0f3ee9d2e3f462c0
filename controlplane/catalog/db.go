package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/laracopilot/controlplane/migrations"
)

// Open connects to the catalog database. SQL is not logged by gorm: errors
// reach the log through the error middleware, and statements could carry
// values that do not belong in logs.
// MaxOpenConns is the size of the catalog's pool.
const MaxOpenConns = 20

func Open(ctx context.Context, url string) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(url), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("open catalog database: %w", redact(err))
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(MaxOpenConns)
	sqlDB.SetMaxIdleConns(10)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect to catalog database: %w", redact(err))
	}
	return db, nil
}

// Migrate applies the catalog migrations on a connection of its own and
// returns the version reached. golang-migrate's advisory lock makes two
// control planes starting at once take turns.
func Migrate(url string) (uint, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return 0, redact(err)
	}
	v, err := migrations.Up(db, migrations.Catalog, migrations.Target{})
	if err != nil {
		return v, fmt.Errorf("migrate catalog: %w", redact(err))
	}
	return v, nil
}

// CheckMigrated reports an error unless the catalog is reachable and at the
// latest migration this binary knows, not dirty. It backs /readyz.
func CheckMigrated(ctx context.Context, db *gorm.DB) error {
	latest, err := migrations.Latest(migrations.Catalog)
	if err != nil {
		return err
	}
	var row struct {
		Version int64
		Dirty   bool
	}
	err = db.WithContext(ctx).Raw(`SELECT version, dirty FROM ` + migrations.Table + ` LIMIT 1`).Scan(&row).Error
	if err != nil {
		return fmt.Errorf("read catalog version: %w", err)
	}
	switch {
	case row.Dirty:
		return fmt.Errorf("catalog migration %d is dirty", row.Version)
	case uint(row.Version) != latest:
		return fmt.Errorf("catalog is at version %d, this binary expects %d", row.Version, latest)
	}
	return nil
}

// redact keeps connection errors free of connection strings: pgx's parse
// errors quote the string they could not parse.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string")
	}
	return err
}
