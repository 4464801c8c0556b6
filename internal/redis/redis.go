// Package redis is the Redis adapter: the fast path that rejects sold items,
// users at their limit and unknown codes, holds open carts, and provides the
// short per-code purchase lock. Its data may be lost at any time; the service
// reloads it from PostgreSQL, which alone decides what is sold.
package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Options configure the client and its instrumentation.
type Options struct {
	PoolSize int
	// Logger receives the client library's own messages (failed dials,
	// pool events), which it would otherwise print unstructured to stderr.
	Logger         *slog.Logger
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// dialer, when set, opens the connections: tests route one node's
	// through a proxy.
	dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WithDefaults fills the providers left nil with the global ones. (A nil
// Logger leaves the client library's logger alone: it is the process's.)
func (o Options) WithDefaults() Options {
	o.MeterProvider = cmp.Or(o.MeterProvider, otel.GetMeterProvider())
	o.TracerProvider = cmp.Or(o.TracerProvider, otel.GetTracerProvider())
	return o
}

// Client is an instrumented go-redis UniversalClient.
type Client struct {
	rdb     redis.UniversalClient
	metrics *clientMetrics
}

// Open returns a client for a redis:// or rediss:// URL. A URL with `addr`
// query parameters names a cluster (`redis://h1:6379?addr=h2:6379`); one with
// `master_name` names a Sentinel-managed master. Commands are traced and
// timed (see instrument).
func Open(rawURL string, opts Options) (*Client, error) {
	opts = opts.WithDefaults()
	if opts.Logger != nil {
		redis.SetLogger(libraryLog{opts.Logger})
	}
	rdb, err := newUniversalClient(rawURL, opts)
	if err != nil {
		return nil, err
	}
	m, err := instrument(rdb, opts)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &Client{rdb: rdb, metrics: m}, nil
}

func newUniversalClient(rawURL string, opts Options) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: invalid URL")
	}
	q := u.Query()
	if n, err := strconv.Atoi(q.Get("max_retries")); q.Has("max_retries") && (err != nil || n > 0) {
		return nil, errors.New("parse REDIS_URL: max_retries is refused: a command whose reply was lost may have run, " +
			"and the service's scripts must not run twice (a failed call answers 503 instead); omit it or set -1")
	}
	// Short timeouts: an unreachable Redis must turn into a quick 503, not
	// a request that waits through rounds of redials. No retry of a command
	// that may have reached Redis (MaxRetries -1): after a read timeout or a
	// dropped connection it may have run, and the scripts are not
	// idempotent; the pipeliner also stops Redis Cluster's own retries of
	// them (sendOnce). A dial that fails sent nothing: it is retried
	// (DialerRetries, 1 unless the URL says otherwise).
	tune := func(dial, read, write *time.Duration, dialRetries, maxRetries *int) {
		*dial, *read, *write = 2*time.Second, time.Second, time.Second
		if *dialRetries == 0 {
			*dialRetries = 1
		}
		*maxRetries = -1
	}
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", redactURLError(err))
		}
		o.PoolSize, o.Dialer = opts.PoolSize, opts.dialer
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries)
		return redis.NewFailoverClient(o), nil
	case q.Has("addr") || strings.Contains(u.Host, ","):
		o, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", redactURLError(err))
		}
		o.PoolSize, o.Dialer = opts.PoolSize, opts.dialer
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries)
		rdb := redis.NewClusterClient(o)
		rdb.AddHook(slotMapReload{rdb})
		return rdb, nil
	default:
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", redactURLError(err))
		}
		o.PoolSize, o.Dialer = opts.PoolSize, opts.dialer
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.DialerRetries, &o.MaxRetries)
		return redis.NewClient(o), nil
	}
}

// slotMapReload is a hook of a Redis Cluster client that has the client
// read the cluster's slot map again (CLUSTER SLOTS, in the background, at
// most one at a time and five a second) whenever a command fails without
// an answer from Redis: a refused connection, a dropped one, a timeout.
// go-redis reads the map again by itself only after a MOVED or READONLY
// answer, or once it is a minute old; but when a master dies, its slots'
// commands keep going to its address, where nothing answers, so nothing
// redirects them. Without this hook a failover that Redis completes in a
// few seconds left the sale unserved until the map was a minute old (42 s
// after the failover in the full-size fault suite). With it, the first
// command after the failover that still goes to the dead master has the
// new map read (0.4 s).
type slotMapReload struct{ c *redis.ClusterClient }

func (h slotMapReload) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h slotMapReload) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.failed(ctx, err)
		return err
	}
}

func (h slotMapReload) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if h.failed(ctx, cmd.Err()) {
				break
			}
		}
		return err
	}
}

// failed asks for the slot map when err is a failure without an answer
// from Redis, and reports whether it did.
func (h slotMapReload) failed(ctx context.Context, err error) bool {
	var answer redis.Error // an error Redis answered (redis.Nil is one)
	if err == nil || errors.As(err, &answer) {
		return false
	}
	h.c.ReloadState(ctx)
	return true
}

// libraryLog writes go-redis's messages to slog, at Warn: they report
// failures (dials, pool) that the service also answers with 503s.
type libraryLog struct{ log *slog.Logger }

func (l libraryLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// redactURLError keeps a parse error's message from carrying the password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Err.Error())
	}
	return err
}

// Ping checks that Redis answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Redis returns the underlying client, for tests and tools.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// Close closes the connection pool.
func (c *Client) Close() error { return c.rdb.Close() }
