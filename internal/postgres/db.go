// Package postgres is the PostgreSQL adapter: the source of truth for sales,
// items, checkout attempts and purchases. It enforces the sale's invariants
// with constraints and transactions, whatever the callers believe.
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/XSAM/otelsql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/batch"
	"github.com/flashsale/flashsale/internal/flashsale"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options configure the connection pool and its instrumentation.
type Options struct {
	MaxOpenConns   int
	MaxIdleConns   int
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
}

// WithDefaults fills the providers left nil with the global ones.
func (o Options) WithDefaults() Options {
	o.MeterProvider = cmp.Or(o.MeterProvider, otel.GetMeterProvider())
	o.TracerProvider = cmp.Or(o.TracerProvider, otel.GetTracerProvider())
	return o
}

// discard is the logger of options without one.
var discard = slog.New(slog.DiscardHandler)

// groupOptions are the options of the group commit of name (checkouts,
// purchases): its batches run in spans of this package's tracer, and are
// committed one by one after a failure that is not an outage.
func groupOptions(name string, maxBatch, writers int, timeout time.Duration, tp trace.TracerProvider, log *slog.Logger) batch.GroupOptions {
	return batch.GroupOptions{
		Name: name, MaxBatch: maxBatch, Writers: writers, Timeout: timeout,
		Tracer: tp.Tracer(instrumentationName), Logger: log,
		Outage: func(err error) bool { return flashsale.ErrorCode(err) == flashsale.EUnavailable },
	}
}

// DB is a pool of instrumented connections to PostgreSQL.
type DB struct {
	sql        *sql.DB
	connConfig string // the name of the registered pgx configuration
	metrics    *dbMetrics
}

// Open connects to PostgreSQL through pgx's database/sql driver wrapped by
// otelsql, so every statement is a span (without bound values) and the pool's
// statistics are metrics (see metrics.go). It does not wait for the server:
// see Ping.
func Open(dsn string, opts Options) (*DB, error) {
	opts = opts.WithDefaults()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	// Plans for the statements' actual arguments and the tables' actual
	// sizes: a generic plan cached while a sale's tables were empty (a sequential
	// scan of carts) would be kept while they grow by thousands of rows a
	// second. Measured: half the checkout throughput (docs/BENCHMARKS.md).
	if _, ok := cfg.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	name := stdlib.RegisterConnConfig(cfg)
	sqlDB, err := otelsql.Open("pgx", name, otelsqlOptions(opts)...)
	if err != nil {
		stdlib.UnregisterConnConfig(name)
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
	sqlDB.SetMaxIdleConns(opts.MaxIdleConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{sql: sqlDB, connConfig: name}
	if db.metrics, err = newDBMetrics(sqlDB, opts); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies the embedded migrations. Instances starting at once are
// serialized by a PostgreSQL advisory lock held for the migration.
func (db *DB) Migrate(ctx context.Context) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db.sql, mustSub(migrations, "migrations"), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return translate(err)
	}
	return nil
}

// SQL returns the underlying pool, for tests and tools.
func (db *DB) SQL() *sql.DB { return db.sql }

// Close unregisters the pool's metrics and closes every connection.
func (db *DB) Close() error {
	if db.metrics != nil {
		db.metrics.unregister()
	}
	err := db.sql.Close()
	stdlib.UnregisterConnConfig(db.connConfig)
	return err
}
