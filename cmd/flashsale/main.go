// Command flashsale runs the flash-sale service: hourly sales of generated
// items, checkout and purchase over HTTP, on PostgreSQL and Redis, with
// OpenTelemetry metrics and traces.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/httpapi"
	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/postgres"
	"github.com/flashsale/flashsale/internal/redis"
	"github.com/flashsale/flashsale/internal/telemetry"
)

// version and revision name the build: the Makefile and the Dockerfile set
// them with -ldflags "-X main.version=... -X main.revision=...". They become
// service.version and the labels of flashsale_build_info.
var version, revision = "dev", "unknown"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// OpenTelemetry's own error reports (a failed export, a failing metric
	// callback) go to the JSON log rather than to stderr.
	if err := run(ctx, os.Getenv, os.Stdout, nil, telemetry.WithGlobalErrorHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx is done, then shuts down
// gracefully: readiness fails first (for SHUTDOWN_DELAY the listeners still
// serve, so load balancers stop routing here), the listeners stop accepting, in-flight
// requests finish (their contexts are not tied to ctx), pending attempt
// batches are written, the pools close, and telemetry is flushed last.
// listening, when not nil, is told the API's address once it accepts. opts
// are added to the telemetry set up from the environment.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer, listening func(addr string), opts ...telemetry.Option) (err error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := telemetry.NewLogger(stdout, cfg.LogLevel)
	memLimit, memErr := setMemoryLimit()
	log.Info("starting", "version", version, "revision", revision, "config", cfg, memLimit)
	if memErr != nil {
		log.Warn("memory limit not set from the cgroup", "err", memErr)
	}

	// The OpenTelemetry SDK and its exporters read the OTEL_* variables from
	// the process environment themselves.
	tel, err := telemetry.Setup(ctx, telemetry.Build{Version: version, Revision: revision},
		append([]telemetry.Option{telemetry.WithLogger(log)}, opts...)...)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = errors.Join(err, tel.Shutdown(sctx))
	}()
	// With an OTLP endpoint, the log records also go to the Collector.
	log = tel.Logger(log)

	db, err := postgres.Open(cfg.DatabaseURL, postgres.Options{
		MaxOpenConns: cfg.DBMaxOpenConns, MaxIdleConns: cfg.DBMaxIdleConns,
		MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	rc, err := redis.Open(cfg.RedisURL, redis.Options{
		PoolSize: cfg.RedisPoolSize, MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider, Logger: log,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rc.Close()) }()
	cache, err := redis.NewCache(rc, redis.CacheOptions{
		Prefix: cfg.RedisKeyPrefix, MeterProvider: tel.MeterProvider,
		CodeMisses: cfg.UnknownCodes.Rate, MissWindow: cfg.UnknownCodes.Period,
		// A user's checkout budget rides in the checkout's own script.
		UserCheckouts: redis.Budget(cfg.RateLimitUser),
	})
	if err != nil {
		return err
	}
	sales, err := postgres.NewSaleStore(db, tel.MeterProvider)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sales.Close()) }()
	carts := postgres.NewCartStore(db, postgres.CartStoreOptions{
		MaxBatch: cfg.AttemptBatch, Writers: cfg.AttemptWriters, TracerProvider: tel.TracerProvider, Logger: log,
	})
	purchases := postgres.NewPurchaseStore(db, postgres.PurchaseStoreOptions{
		MaxBatch: cfg.PurchaseBatch, Writers: cfg.PurchaseWriters, TracerProvider: tel.TracerProvider, Logger: log,
	})
	// The settlement proof: one instance per sale and period, by the lock.
	settleLock, err := redis.NewSettlementLock(rc, cfg.RedisKeyPrefix, tel.MeterProvider)
	if err != nil {
		return err
	}
	settler, err := invariants.NewSettler(db.SQL(), invariants.SettlerOptions{
		Interval: cfg.SettlementInterval, Hold: cfg.SaleDuration, Locker: settleLock,
		MeterProvider: tel.MeterProvider, Logger: log,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, settler.Close()) }()
	svc := flashsale.NewService(flashsale.Config{
		SaleItems: cfg.SaleItems, SaleDuration: cfg.SaleDuration, UserItemLimit: cfg.UserItemLimit,
	}, sales, purchases, carts, cache, log)

	ready := newReadiness()
	metricsHandler := tel.MetricsHandler
	if cfg.MetricsAddr != "" {
		metricsHandler = nil // served on its own listener below
	}
	// Abuse limits of checkout and purchase, budgets shared through Redis.
	limiter := redis.NewRateLimiter(rc, redis.RateLimiterOptions{Prefix: cfg.RedisKeyPrefix})
	defer limiter.Close() // after the servers' shutdown: no request uses it any more
	api, err := httpapi.NewServer(svc, httpapi.Options{
		AdminToken: cfg.AdminToken, SeparateAdmin: cfg.AdminAddr != "", MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider,
		Propagator: tel.Propagator, Logger: log, MetricsHandler: metricsHandler,
		MaxInFlight: cfg.MaxInFlight, QueueWait: cfg.QueueWait,
		Refusals: carts, // checkouts shed or rate-limited, counted in PostgreSQL per minute
		RateLimits: httpapi.RateLimits{
			Limiter: limiter, User: cfg.RateLimitUser, Addr: cfg.RateLimitAddr, TrustedProxies: cfg.TrustedProxies,
		},
		Checks: map[string]func(context.Context) error{
			"database": db.Ping,
			"redis":    rc.Ping,
			"app":      ready.check, // migrations applied and the current sale ensured
		},
	})
	if err != nil {
		return err
	}

	servers := []*http.Server{cfg.newServer(cfg.HTTPAddr, withDeadline(api.Handler(), cfg.RequestTimeout))}
	if cfg.MetricsAddr != "" && tel.MetricsHandler != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.MetricsHandler)
		servers = append(servers, cfg.newServer(cfg.MetricsAddr, mux))
	}
	if h := api.AdminHandler(); h != nil {
		// The admin API alone, for a listener that only operators reach.
		servers = append(servers, cfg.newServer(cfg.AdminAddr, withDeadline(h, cfg.RequestTimeout)))
	}
	if cfg.PprofAddr != "" {
		// Profiles of a live instance, on a listener of their own that
		// should stay private (loopback or a port no one outside reaches).
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		srv := cfg.newServer(cfg.PprofAddr, mux)
		srv.WriteTimeout = 0 // a CPU profile takes as long as it is asked to
		servers = append(servers, srv)
	}
	serveErr := make(chan error, len(servers))
	for i, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		log.Info("listening", "addr", ln.Addr().String())
		if i == 0 && listening != nil {
			listening(ln.Addr().String())
		}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		}()
	}

	// Migrations and the current sale come first; until then readiness is
	// false and the API answers 503. A database that is down at start is
	// waited for, not fatal: until the signal, or until a listener fails.
	startCtx, stopStartup := context.WithCancel(ctx)
	defer stopStartup()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	started := make(chan struct{})
	go func() {
		defer close(started)
		if err := startup(startCtx, db, svc, log); err != nil {
			return
		}
		ready.set(nil)
		// The scheduler's clock checks every few seconds and the
		// settlement proofs are not traced.
		var wg sync.WaitGroup
		wg.Go(func() { settler.Run(telemetry.Untraced(bg)) })
		svc.RunScheduler(telemetry.Untraced(bg))
		wg.Wait()
	}()

	// failed is the error of a listener that stopped serving: run shuts down
	// the others and returns it, so the process exits non-zero.
	var failed error
	drain := cfg.ShutdownDelay
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serr := <-serveErr:
		drain = 0 // a listener failed: nothing to drain towards
		log.Error("server failed", "err", serr)
		ctx = context.WithoutCancel(ctx)
		failed = fmt.Errorf("serve: %w", serr)
	}
	stopStartup()
	api.SetShuttingDown()
	if drain > 0 {
		// Readiness fails first while the listeners keep serving, so that
		// load balancers stop routing here before connections are refused.
		log.Info("draining: readiness fails, still serving", "for", drain)
		time.Sleep(drain)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "err", err)
		}
	}
	stopBG()
	<-started
	// Requests have finished; their attempts, the refused checkouts' counts
	// and purchases are written before the pools close.
	if err := carts.Close(); err != nil {
		log.Warn("cart store close", "err", err)
	}
	if err := purchases.Close(); err != nil {
		log.Warn("purchase store close", "err", err)
	}
	if err := cache.Close(); err != nil {
		log.Warn("cache close", "err", err)
	}
	log.Info("stopped")
	return failed
}

// startup applies migrations and ensures the current and next sales exist,
// retrying while the database is unreachable, until ctx is done.
func startup(ctx context.Context, db *postgres.DB, svc *flashsale.Service, log *slog.Logger) error {
	backoff := 100 * time.Millisecond
	for {
		err := db.Migrate(ctx)
		if err == nil {
			err = svc.EnsureSales(ctx)
		}
		if err == nil {
			log.Info("ready")
			return nil
		}
		log.Warn("startup: database not ready, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// withDeadline bounds each request: database and Redis calls past the deadline
// fail as unavailable (503) instead of piling up.
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// maxHeaderBytes is net/http's own limit of a request's line and header,
// past which it answers a plain-text 431 before any handler runs. It stays
// well above the API's limits (httpapi.MaxURIBytes, httpapi.MaxHeaderBytes),
// which answer JSON 414 and 431, so that only grossly oversized requests meet
// it.
const maxHeaderBytes = 256 << 10

// newServer returns a server for h on addr: a client has READ_HEADER_TIMEOUT
// (c.ReadHeaderTimeout, default 5s) to send a request's header and 15s for
// the whole request, the response must be written within 30s, and an idle
// connection is closed after 2 minutes.
func (c Config) newServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		// Requests keep running when the signal arrives: a purchase must not
		// abort mid-transaction. Shutdown waits for them instead.
		BaseContext: func(net.Listener) context.Context { return context.Background() },
	}
}
