package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// queryBuckets are the metric catalog's boundaries (docs/TELEMETRY.md) of db_query_duration_seconds.
var queryBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type dbMetrics struct {
	queryDuration metric.Float64Histogram
	reg           metric.Registration
}

func newDBMetrics(mp metric.MeterProvider, db *sql.DB) (*dbMetrics, error) {
	m := mp.Meter(instrumentationName)
	var dm dbMetrics
	var err error
	dm.queryDuration, err = m.Float64Histogram("db_query_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of database queries in seconds"),
		metric.WithExplicitBucketBoundaries(queryBuckets...))
	if err != nil {
		return nil, fmt.Errorf("db_query_duration_seconds: %w", err)
	}
	active, err := m.Int64ObservableGauge("db_connections_active",
		metric.WithDescription("Number of database connections in use"))
	if err != nil {
		return nil, fmt.Errorf("db_connections_active: %w", err)
	}
	idle, err := m.Int64ObservableGauge("db_connections_idle",
		metric.WithDescription("Number of idle database connections"))
	if err != nil {
		return nil, fmt.Errorf("db_connections_idle: %w", err)
	}
	dm.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := db.Stats()
		o.ObserveInt64(active, int64(st.InUse))
		o.ObserveInt64(idle, int64(st.Idle))
		return nil
	}, active, idle)
	if err != nil {
		return nil, fmt.Errorf("pool gauges: %w", err)
	}
	return &dm, nil
}

// query names one statement for db_query_duration_seconds, with its
// attribute set computed once.
type query struct {
	sql  string
	opts metric.MeasurementOption
}

func newQuery(queryType, table, sql string) query {
	return query{sql: sql, opts: metric.WithAttributeSet(attribute.NewSet(
		attribute.String("query_type", queryType), attribute.String("table", table)))}
}

// observe records the duration of q since start.
func (db *DB) observe(ctx context.Context, q query, start time.Time) {
	db.metrics.queryDuration.Record(ctx, time.Since(start).Seconds(), q.opts)
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) exec(ctx context.Context, q querier, qq query, args ...any) (sql.Result, error) {
	defer db.observe(ctx, qq, time.Now())
	return q.ExecContext(ctx, qq.sql, args...)
}

func (db *DB) query(ctx context.Context, q querier, qq query, args ...any) (*sql.Rows, error) {
	defer db.observe(ctx, qq, time.Now())
	return q.QueryContext(ctx, qq.sql, args...)
}

func (db *DB) queryRow(ctx context.Context, q querier, qq query, args ...any) *sql.Row {
	defer db.observe(ctx, qq, time.Now())
	return q.QueryRowContext(ctx, qq.sql, args...)
}
