package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/flashsale/flashsale/internal/httpapi"
	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/postgres"
	"github.com/flashsale/flashsale/internal/redis"
)

// Config is the service's configuration, read from the environment. The
// OpenTelemetry SDK is configured separately by the standard OTEL_* variables.
type Config struct {
	HTTPAddr        string        // HTTP_ADDR
	MetricsAddr     string        // METRICS_ADDR: serve /metrics on its own listener when set
	PprofAddr       string        // PPROF_ADDR: serve net/http/pprof on its own listener when set
	AdminAddr       string        // ADMIN_ADDR: serve the admin API on its own listener (only) when set
	DatabaseURL     string        // DATABASE_URL
	RedisURL        string        // REDIS_URL
	RedisKeyPrefix  string        // REDIS_KEY_PREFIX
	SaleItems       int           // SALE_ITEMS
	SaleDuration    time.Duration // SALE_DURATION
	UserItemLimit   int           // USER_ITEM_LIMIT
	AdminToken      string        // ADMIN_TOKEN: "" disables the admin API
	DBMaxOpenConns  int           // DB_MAX_OPEN_CONNS
	DBMaxIdleConns  int           // DB_MAX_IDLE_CONNS
	RedisPoolSize   int           // REDIS_POOL_SIZE
	AttemptBatch    int           // ATTEMPT_BATCH_MAX
	AttemptWriters  int           // ATTEMPT_WRITERS
	MaxInFlight     int           // MAX_INFLIGHT: API requests worked on at once (0: no bound)
	QueueWait       time.Duration // QUEUE_WAIT: how long a request waits for a slot before 503
	PurchaseBatch   int           // PURCHASE_BATCH_MAX
	PurchaseWriters int           // PURCHASE_WRITERS
	RequestTimeout  time.Duration // REQUEST_TIMEOUT
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT
	ShutdownDelay   time.Duration // SHUTDOWN_DELAY: /readyz answers 503 this long before the listener closes
	LogLevel        slog.Level    // LOG_LEVEL

	// SETTLEMENT_INTERVAL: how often the running sale's guarantees are
	// proven from PostgreSQL (by one instance of the deployment).
	SettlementInterval time.Duration

	// READ_HEADER_TIMEOUT: how long a client may take to send a request's
	// header before the connection is closed (slow-header clients).
	ReadHeaderTimeout time.Duration

	// Abuse limits of POST /checkout and /purchase, shared through Redis.
	RateLimitUser httpapi.Limit // RATE_LIMIT_USER, RATE_LIMIT_USER_BURST: per user and sale (purchase: per code)
	// RATE_LIMIT_UNKNOWN_CODES: purchases of codes that PostgreSQL does not
	// know either, per client address and sale (fixed window): each costs a
	// database look-up.
	UnknownCodes   httpapi.Limit
	RateLimitAddr  httpapi.Limit // RATE_LIMIT_ADDR, RATE_LIMIT_ADDR_BURST: per client address
	TrustedProxies []net.IPNet   // TRUSTED_PROXIES: whose X-Forwarded-For names the client
}

// loadConfig reads and validates the configuration.
func loadConfig(getenv func(string) string) (Config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	var errs []error
	intVar := func(key string, def, lo, hi int) int {
		v, err := strconv.Atoi(env(key, strconv.Itoa(def)))
		if err != nil || v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s must be an integer between %d and %d", key, lo, hi))
		}
		return v
	}
	durVar := func(key string, def, lo time.Duration) time.Duration {
		v, err := time.ParseDuration(env(key, def.String()))
		if err != nil || v < lo {
			errs = append(errs, fmt.Errorf("%s must be a duration of at least %s", key, lo))
		}
		return v
	}
	// The adapters' own defaults are the deployment's.
	carts, purchases := postgres.CartStoreOptions{}.WithDefaults(), postgres.PurchaseStoreOptions{}.WithDefaults()
	cache, settler := redis.CacheOptions{}.WithDefaults(), invariants.SettlerOptions{}.WithDefaults()
	c := Config{
		HTTPAddr:        env("HTTP_ADDR", ":8080"),
		MetricsAddr:     getenv("METRICS_ADDR"),
		PprofAddr:       getenv("PPROF_ADDR"),
		AdminAddr:       getenv("ADMIN_ADDR"),
		DatabaseURL:     env("DATABASE_URL", "postgres://flashsale@127.0.0.1:25432/flashsale?sslmode=disable"),
		RedisURL:        env("REDIS_URL", "redis://127.0.0.1:25379/0"),
		RedisKeyPrefix:  env("REDIS_KEY_PREFIX", cache.Prefix),
		SaleItems:       intVar("SALE_ITEMS", 10000, 1, 999_999),
		SaleDuration:    durVar("SALE_DURATION", time.Hour, time.Second),
		UserItemLimit:   intVar("USER_ITEM_LIMIT", 10, 1, 1000),
		AdminToken:      getenv("ADMIN_TOKEN"),
		DBMaxOpenConns:  intVar("DB_MAX_OPEN_CONNS", 32, 2, 1000),
		DBMaxIdleConns:  intVar("DB_MAX_IDLE_CONNS", 32, 0, 1000),
		RedisPoolSize:   intVar("REDIS_POOL_SIZE", 64, 1, 10000),
		AttemptBatch:    intVar("ATTEMPT_BATCH_MAX", carts.MaxBatch, 1, 10000),
		AttemptWriters:  intVar("ATTEMPT_WRITERS", carts.Writers, 1, 64),
		MaxInFlight:     intVar("MAX_INFLIGHT", 256, 0, 100000),
		QueueWait:       durVar("QUEUE_WAIT", 5*time.Second, time.Millisecond),
		PurchaseBatch:   intVar("PURCHASE_BATCH_MAX", purchases.MaxBatch, 1, 1000),
		PurchaseWriters: intVar("PURCHASE_WRITERS", purchases.Writers, 1, 64),
		RequestTimeout:  durVar("REQUEST_TIMEOUT", 10*time.Second, 100*time.Millisecond),
		ShutdownTimeout: durVar("SHUTDOWN_TIMEOUT", 20*time.Second, time.Second),
		ShutdownDelay:   durVar("SHUTDOWN_DELAY", 5*time.Second, 0),

		SettlementInterval: durVar("SETTLEMENT_INTERVAL", settler.Interval, 100*time.Millisecond),

		ReadHeaderTimeout: durVar("READ_HEADER_TIMEOUT", 5*time.Second, 100*time.Millisecond),
	}
	if err := c.LogLevel.UnmarshalText([]byte(env("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, errors.New("LOG_LEVEL must be debug, info, warn or error"))
	}
	// Rate limits: "N" or "N/s", "N/m", "N/h" (0: off), and for the token
	// buckets a burst that defaults to twice the rate.
	rateVar := func(key, def string) httpapi.Limit {
		l, err := httpapi.ParseLimitRate(env(key, def))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s must be N, N/s, N/m or N/h with N between 0 and 1000000", key))
		}
		return l
	}
	limitVar := func(key, def string) httpapi.Limit {
		l := rateVar(key, def)
		l.Burst = intVar(key+"_BURST", max(2*l.Rate, 1), 1, 10_000_000)
		return l
	}
	c.RateLimitUser = limitVar("RATE_LIMIT_USER", "10")
	c.RateLimitAddr = limitVar("RATE_LIMIT_ADDR", "0")
	// A fixed window of look-ups per client and sale: no burst.
	c.UnknownCodes = rateVar("RATE_LIMIT_UNKNOWN_CODES", "20/m")
	if c.UnknownCodes.Rate < 1 {
		errs = append(errs, errors.New("RATE_LIMIT_UNKNOWN_CODES must allow at least 1 look-up"))
	}
	if v := getenv("TRUSTED_PROXIES"); v != "" {
		nets, err := httpapi.ParseTrustedProxies(v)
		if err != nil {
			errs = append(errs, errors.New("TRUSTED_PROXIES must be a comma-separated list of IP addresses and CIDR ranges"))
		}
		c.TrustedProxies = nets
	}
	if c.AdminToken != "" && len(c.AdminToken) < 8 {
		errs = append(errs, errors.New("ADMIN_TOKEN must be at least 8 characters"))
	}
	if c.AdminAddr != "" && c.AdminToken == "" {
		errs = append(errs, errors.New("ADMIN_ADDR needs ADMIN_TOKEN: the admin API is disabled without it"))
	}
	for _, u := range []struct{ key, val string }{{"DATABASE_URL", c.DatabaseURL}, {"REDIS_URL", c.RedisURL}} {
		if _, err := url.Parse(u.val); err != nil {
			errs = append(errs, fmt.Errorf("%s is not a valid URL", u.key))
		}
	}
	return c, errors.Join(errs...)
}

// LogValue prints the configuration with its secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.String("pprof_addr", c.PprofAddr),
		slog.String("admin_addr", c.AdminAddr),
		slog.Duration("read_header_timeout", c.ReadHeaderTimeout),
		slog.String("database_url", redactURL(c.DatabaseURL)),
		slog.String("redis_url", redactURL(c.RedisURL)),
		slog.String("redis_key_prefix", c.RedisKeyPrefix),
		slog.Int("sale_items", c.SaleItems),
		slog.Duration("sale_duration", c.SaleDuration),
		slog.Int("user_item_limit", c.UserItemLimit),
		slog.Bool("admin_enabled", c.AdminToken != ""),
		slog.Int("db_max_open_conns", c.DBMaxOpenConns),
		slog.Int("db_max_idle_conns", c.DBMaxIdleConns),
		slog.Int("redis_pool_size", c.RedisPoolSize),
		slog.Int("attempt_batch_max", c.AttemptBatch),
		slog.Int("attempt_writers", c.AttemptWriters),
		slog.Int("max_inflight", c.MaxInFlight),
		slog.Duration("queue_wait", c.QueueWait),
		slog.Int("purchase_batch_max", c.PurchaseBatch),
		slog.Int("purchase_writers", c.PurchaseWriters),
		slog.Duration("request_timeout", c.RequestTimeout),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout),
		slog.Duration("shutdown_delay", c.ShutdownDelay),
		slog.Duration("settlement_interval", c.SettlementInterval),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("rate_limit_user", limitString(c.RateLimitUser)),
		slog.String("rate_limit_unknown_codes", fmt.Sprintf("%d per %s", c.UnknownCodes.Rate, c.UnknownCodes.Period)),
		slog.String("rate_limit_addr", limitString(c.RateLimitAddr)),
		slog.Int("trusted_proxies", len(c.TrustedProxies)),
	)
}

// setMemoryLimit sets the Go memory limit, past which the garbage collector
// works harder to keep the process's memory under it, and returns, for the
// start-up log, the limit in effect and where it comes from:
//   - GOMEMLIMIT, when set: the runtime has read it itself;
//   - cgroup: 90% of the memory limit of the process's cgroup (a container's
//     limit), so that the collector, not the kernel's OOM killer, acts first;
//     AUTOMEMLIMIT, when set, is another ratio in (0,1], or "off";
//   - none: neither, or "off".
//
// Both variables are read from the process environment, as the runtime does.
// The limit is the process's, set here rather than in main so that the
// start-up log states it: tests that run the service many times in one
// process set the same value each time.
func setMemoryLimit() (slog.Attr, error) {
	limit, err := memlimit.Set(memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup))
	if errors.Is(err, memlimit.ErrNoCgroup) || errors.Is(err, memlimit.ErrCgroupsNotSupported) {
		err = nil // no cgroup, no limit
	}
	from := "cgroup"
	switch {
	case limit == math.MaxInt64: // the runtime's "no limit"
		return slog.Group("memory_limit", "from", "none"), err
	case os.Getenv("GOMEMLIMIT") != "":
		from = "GOMEMLIMIT"
	}
	return slog.Group("memory_limit", "bytes", limit, "from", from), err
}

// redactURL masks the password of a URL, and anything that does not parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	return u.Redacted()
}

// limitString prints a rate limit for the start-up log.
func limitString(l httpapi.Limit) string {
	if l.Rate == 0 {
		return "off"
	}
	return fmt.Sprintf("%d per %s, burst %d", l.Rate, l.Period, l.Burst)
}
