package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/XSAM/otelsql"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/telemetry"
)

// The adapter's instruments come in two sets, both required: the
// semantic-convention ones of otelsql (with the spans of every statement)
// and the metric catalog (docs/TELEMETRY.md) (db_query_duration_seconds, db_connections_*, and
// the sale gauges of SaleStore).

// otelsqlOptions instrument the pool with otelsql: every statement is a span
// without its bound values, timed in the semantic-convention instruments.
func otelsqlOptions(opts Options) []otelsql.Option {
	return []otelsql.Option{
		otelsql.WithAttributes(semconv.DBSystemNamePostgreSQL),
		otelsql.WithTracerProvider(opts.TracerProvider),
		otelsql.WithMeterProvider(opts.MeterProvider),
		otelsql.WithSpanOptions(otelsql.SpanOptions{
			OmitConnResetSession: true,
			OmitRows:             true,
			OmitConnPrepare:      true,
		}),
	}
}

// queryBuckets are the metric catalog's boundaries of db_query_duration_seconds.
var queryBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// dbMetrics are the pool's instruments: otelsql's statistics of the pool
// and the catalog's.
type dbMetrics struct {
	queryDuration metric.Float64Histogram
	regs          []metric.Registration
}

func newDBMetrics(db *sql.DB, opts Options) (*dbMetrics, error) {
	var dm dbMetrics
	reg, err := otelsql.RegisterDBStatsMetrics(db, otelsqlOptions(opts)...)
	if err != nil {
		return nil, fmt.Errorf("register pool metrics: %w", err)
	}
	dm.regs = append(dm.regs, reg)
	m := opts.MeterProvider.Meter(instrumentationName)
	dm.queryDuration, err = m.Float64Histogram("db_query_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of database queries in seconds"),
		metric.WithExplicitBucketBoundaries(queryBuckets...))
	if err != nil {
		dm.unregister()
		return nil, fmt.Errorf("db_query_duration_seconds: %w", err)
	}
	active, err := m.Int64ObservableGauge("db_connections_active",
		metric.WithDescription("Number of database connections in use"))
	if err != nil {
		dm.unregister()
		return nil, fmt.Errorf("db_connections_active: %w", err)
	}
	idle, err := m.Int64ObservableGauge("db_connections_idle",
		metric.WithDescription("Number of idle database connections"))
	if err != nil {
		dm.unregister()
		return nil, fmt.Errorf("db_connections_idle: %w", err)
	}
	reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := db.Stats()
		o.ObserveInt64(active, int64(st.InUse))
		o.ObserveInt64(idle, int64(st.Idle))
		return nil
	}, active, idle)
	if err != nil {
		dm.unregister()
		return nil, fmt.Errorf("pool gauges: %w", err)
	}
	dm.regs = append(dm.regs, reg)
	return &dm, nil
}

func (dm *dbMetrics) unregister() {
	for _, r := range dm.regs {
		_ = r.Unregister()
	}
}

// registerSaleGauges registers the gauges of the active sale, which
// active reads: sale_items_offered, sale_items_sold_current, sale_active.
func registerSaleGauges(mp metric.MeterProvider, active func(context.Context) (*flashsale.Sale, error)) (metric.Registration, error) {
	m := mp.Meter(instrumentationName)
	total, err := m.Int64ObservableGauge("sale_items_offered",
		metric.WithDescription("Total number of items in the active sale"))
	if err != nil {
		return nil, fmt.Errorf("sale_items_offered: %w", err)
	}
	sold, err := m.Int64ObservableGauge("sale_items_sold_current",
		metric.WithDescription("Number of items sold in the active sale, read from the database"))
	if err != nil {
		return nil, fmt.Errorf("sale_items_sold_current: %w", err)
	}
	running, err := m.Int64ObservableGauge("sale_active",
		metric.WithDescription("Whether a sale is running (1) or not (0), read from the database"))
	if err != nil {
		return nil, fmt.Errorf("sale_active: %w", err)
	}
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(telemetry.Untraced(ctx), time.Second)
		defer cancel()
		sale, err := active(ctx)
		switch {
		case flashsale.ErrorCode(err) == flashsale.ENotFound:
			o.ObserveInt64(total, 0)
			o.ObserveInt64(sold, 0)
			o.ObserveInt64(running, 0)
			return nil
		case err != nil:
			return err // no observation: a scrape must not show a made-up value
		}
		o.ObserveInt64(total, int64(sale.TotalItems))
		o.ObserveInt64(sold, int64(sale.ItemsSold))
		o.ObserveInt64(running, 1)
		return nil
	}, total, sold, running)
	if err != nil {
		return nil, fmt.Errorf("sale gauges: %w", err)
	}
	return reg, nil
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
