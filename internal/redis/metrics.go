package redis

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The adapter's instruments come in two sets, both required: the
// semantic-convention ones of redisotel (with the spans of every
// command) and the metric catalog (docs/TELEMETRY.md) (redis_command_duration_seconds,
// redis_lock_*).

// instrument has redisotel trace every command, without its arguments or
// caller, and time it in the semantic-convention instruments, and adds the
// hook that times it in redis_command_duration_seconds.
func instrument(rdb redis.UniversalClient, opts Options) (*clientMetrics, error) {
	if err := redisotel.InstrumentTracing(rdb,
		redisotel.WithTracerProvider(opts.TracerProvider),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	); err != nil {
		return nil, fmt.Errorf("redis tracing: %w", err)
	}
	if err := redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(opts.MeterProvider)); err != nil {
		return nil, fmt.Errorf("redis metrics: %w", err)
	}
	m, err := newClientMetrics(opts.MeterProvider)
	if err != nil {
		return nil, err
	}
	rdb.AddHook(m)
	return m, nil
}

// The metric catalog's boundaries of redis_command_duration_seconds and of
// redis_lock_duration_seconds.
var (
	commandBuckets = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
	lockBuckets    = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// clientMetrics is a go-redis hook that times every command by name.
type clientMetrics struct {
	commandDuration metric.Float64Histogram
	attrs           sync.Map // command name -> metric.MeasurementOption
}

func newClientMetrics(mp metric.MeterProvider) (*clientMetrics, error) {
	h, err := mp.Meter(meterName).Float64Histogram("redis_command_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of Redis commands in seconds"),
		metric.WithExplicitBucketBoundaries(commandBuckets...))
	if err != nil {
		return nil, fmt.Errorf("redis_command_duration_seconds: %w", err)
	}
	return &clientMetrics{commandDuration: h}, nil
}

const meterName = "github.com/flashsale/flashsale/internal/redis"

// commandAttrs returns the precomputed attribute set of a command name. Names
// come from the client's own command set, so the label stays bounded.
func (m *clientMetrics) commandAttrs(name string) metric.MeasurementOption {
	if v, ok := m.attrs.Load(name); ok {
		return v.(metric.MeasurementOption)
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attribute.String("command", name)))
	v, _ := m.attrs.LoadOrStore(name, opt)
	return v.(metric.MeasurementOption)
}

func (m *clientMetrics) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (m *clientMetrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		m.commandDuration.Record(ctx, time.Since(start).Seconds(), m.commandAttrs(cmd.Name()))
		return err
	}
}

func (m *clientMetrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		// A pipeline's commands share one round trip: each is recorded with
		// the pipeline's duration.
		d := time.Since(start).Seconds()
		for _, cmd := range cmds {
			m.commandDuration.Record(ctx, d, m.commandAttrs(cmd.Name()))
		}
		return err
	}
}

// lockMetrics are the redis_lock_* instruments, for locks of bounded types.
type lockMetrics struct {
	attempts, successes, failures metric.Int64Counter
	duration                      metric.Float64Histogram
}

func newLockMetrics(mp metric.MeterProvider) (*lockMetrics, error) {
	m := cmp.Or(mp, otel.GetMeterProvider()).Meter(meterName)
	var lm lockMetrics
	var err error
	if lm.attempts, err = m.Int64Counter("redis_lock_attempts_total",
		metric.WithDescription("Total number of distributed lock attempts")); err != nil {
		return nil, fmt.Errorf("redis_lock_attempts_total: %w", err)
	}
	if lm.successes, err = m.Int64Counter("redis_lock_success_total",
		metric.WithDescription("Total number of distributed locks acquired")); err != nil {
		return nil, fmt.Errorf("redis_lock_success_total: %w", err)
	}
	if lm.failures, err = m.Int64Counter("redis_lock_failure_total",
		metric.WithDescription("Total number of distributed lock attempts that failed, by reason")); err != nil {
		return nil, fmt.Errorf("redis_lock_failure_total: %w", err)
	}
	if lm.duration, err = m.Float64Histogram("redis_lock_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of lock hold time in seconds"),
		metric.WithExplicitBucketBoundaries(lockBuckets...)); err != nil {
		return nil, fmt.Errorf("redis_lock_duration_seconds: %w", err)
	}
	return &lm, nil
}

// Lock failure reasons.
const (
	lockContended = "contended" // another holder has the lock
	lockError     = "error"     // Redis did not answer
)

// lockType holds the precomputed attribute sets of one lock type.
type lockType struct {
	m                    *lockMetrics
	typ                  metric.MeasurementOption
	contended, errReason metric.MeasurementOption
}

func (lm *lockMetrics) lockType(name string) *lockType {
	typ := attribute.String("lock_type", name)
	l := &lockType{
		m:         lm,
		typ:       metric.WithAttributeSet(attribute.NewSet(typ)),
		contended: metric.WithAttributeSet(attribute.NewSet(typ, attribute.String("reason", lockContended))),
		errReason: metric.WithAttributeSet(attribute.NewSet(typ, attribute.String("reason", lockError))),
	}
	// Every series of the type starts at 0, so that contention ratios and
	// rate() see the first attempts.
	ctx := context.Background()
	lm.attempts.Add(ctx, 0, l.typ)
	lm.successes.Add(ctx, 0, l.typ)
	lm.failures.Add(ctx, 0, l.contended)
	lm.failures.Add(ctx, 0, l.errReason)
	return l
}

// attempted records one attempt and its outcome: "" for success, or a reason.
func (l *lockType) attempted(ctx context.Context, failure string) {
	l.m.attempts.Add(ctx, 1, l.typ)
	switch failure {
	case "":
		l.m.successes.Add(ctx, 1, l.typ)
	case lockContended:
		l.m.failures.Add(ctx, 1, l.contended)
	default:
		l.m.failures.Add(ctx, 1, l.errReason)
	}
}

// released records how long a lock acquired at since was held.
func (l *lockType) released(ctx context.Context, since time.Time) {
	l.m.duration.Record(ctx, time.Since(since).Seconds(), l.typ)
}
