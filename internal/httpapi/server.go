// Package httpapi is the HTTP adapter of the flash-sale service. It decodes
// requests, calls the Service and encodes its answers and errors as JSON,
// with OpenTelemetry traces and metrics and a log line per request.
package httpapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// instrumentationName names the tracer and the meter of this package.
const instrumentationName = "github.com/flashsale/flashsale/internal/httpapi"

// Service is what the API asks of the flash-sale service
// (*flashsale.Service); see it for the error codes each method returns.
type Service interface {
	Checkout(ctx context.Context, userID string, itemID int64) (res flashsale.CheckoutResult, saleID int64, err error)
	Purchase(ctx context.Context, code, client string) (*flashsale.Purchase, error)
	ActiveSale(ctx context.Context) (*flashsale.Sale, error)
	Sale(ctx context.Context, id int64) (*flashsale.Sale, error)
	Items(ctx context.Context, saleID int64, offset, limit int) ([]flashsale.Item, error)
	CreateSale(ctx context.Context, totalItems int, d time.Duration) (*flashsale.Sale, error)
}

// Options configures a Server. Every field is optional.
type Options struct {
	// AdminToken is the bearer token of POST /admin/sales. An empty token
	// disables the route: it answers 404 like any unknown route.
	AdminToken string
	// MeterProvider, TracerProvider and Propagator default to no-ops and to
	// W3C trace context and baggage; the package never reads OTel globals.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Checks are the dependency checks of /health and /readyz by name, for
	// example "database" and "redis".
	Checks map[string]func(context.Context) error
	// MetricsHandler is mounted at GET /metrics when non-nil.
	MetricsHandler http.Handler
	// SeparateAdmin serves the admin API from AdminHandler only, for a
	// listener of its own; Handler then answers 404 for it.
	SeparateAdmin bool
	// MaxInFlight bounds the API requests being worked on at once; others
	// wait up to QueueWait for a slot, then get 503 overloaded with
	// Retry-After. Beyond what the CPU and the dependencies can serve, more
	// concurrency only adds latency and memory. 0 means no bound.
	MaxInFlight int
	QueueWait   time.Duration
	// RateLimits are the abuse limits of checkout and purchase; the zero
	// value: none.
	RateLimits RateLimits
	// Refusals counts the checkouts shed by admission or refused by the
	// rate limits; nil: they are not counted.
	Refusals RefusalLog
}

// Server serves the HTTP API of a Service.
type Server struct {
	svc     Service
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *metrics

	adminHash [sha256.Size]byte // SHA-256 of the admin token

	checks       []check // sorted by name
	readings     readings
	started      time.Time
	shuttingDown atomic.Bool

	limits     *limits       // the abuse limits, and the client address as they see it
	adminGuard *adminGuard   // failed admin authentications by client address
	refusals   RefusalLog    // nil: refused checkouts are not counted
	slots      chan struct{} // admission: one token per API request in flight; nil: no bound
	queueWait  time.Duration

	trace        func(http.Handler) http.Handler // otelhttp: the server span and its metrics
	mux          *http.ServeMux
	handler      http.Handler
	adminHandler http.Handler // nil unless the admin API is served on its own
}

// NewServer returns a Server for svc. It creates the telemetry instruments
// once, so a Server should be created once per process.
func NewServer(svc Service, opts Options) (*Server, error) {
	if svc == nil {
		return nil, errors.New("httpapi: nil service")
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	prop := opts.Propagator
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meter := mp.Meter(instrumentationName)
	m, err := newMetrics(meter)
	if err != nil {
		return nil, fmt.Errorf("httpapi: create instruments: %w", err)
	}
	lim, err := newLimits(opts.RateLimits, log)
	if err != nil {
		return nil, err
	}
	s := &Server{
		svc:        svc,
		log:        log,
		tracer:     tp.Tracer(instrumentationName),
		metrics:    m,
		adminHash:  sha256.Sum256([]byte(opts.AdminToken)),
		started:    time.Now(),
		limits:     lim,
		adminGuard: newAdminGuard(),
		refusals:   opts.Refusals,
		queueWait:  opts.QueueWait,
		trace: otelhttp.NewMiddleware("flashsale",
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // see metrics.serverDuration
			otelhttp.WithPropagators(prop)),
		mux: http.NewServeMux(),
	}
	if opts.MaxInFlight > 0 {
		s.slots = make(chan struct{}, opts.MaxInFlight)
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Checks)) {
		fn := opts.Checks[name]
		if fn == nil {
			return nil, fmt.Errorf("httpapi: check %q is nil", name)
		}
		s.checks = append(s.checks, check{name: name, fn: fn})
	}
	s.readings = s.newReadings()
	if err := errors.Join(s.registerAdmissionGauge(meter), s.registerHealthGauge(meter)); err != nil {
		return nil, fmt.Errorf("httpapi: create instruments: %w", err)
	}
	adminMux := s.mux
	if opts.SeparateAdmin && opts.AdminToken != "" {
		adminMux = http.NewServeMux()
		s.adminHandler = s.route(adminMux)
	}
	s.routes(s.mux, adminMux, opts.AdminToken != "", opts.MetricsHandler)
	s.handler = s.route(s.mux)
	return s, nil
}

// routes registers every route of the API: this is their one list.
func (s *Server) routes(mux, adminMux *http.ServeMux, admin bool, metricsHandler http.Handler) {
	mux.Handle(checkoutPattern, s.api(s.handleCheckout))
	mux.Handle("POST /purchase", s.api(s.handlePurchase))
	mux.Handle("GET /sales/active", s.api(s.handleActiveSale))
	mux.Handle("GET /sales/{id}", s.api(s.handleSale))
	mux.Handle("GET /sales/{id}/items", s.api(s.handleSaleItems))
	if admin {
		adminMux.Handle("POST /admin/sales", s.apiWithBody(s.handleCreateSale))
	}
	mux.Handle("GET /health", s.probe(s.handleHealth))
	mux.Handle("GET /livez", s.probe(s.handleLivez))
	mux.Handle("GET /readyz", s.probe(s.handleReadyz))
	if metricsHandler != nil {
		mux.Handle("GET /metrics", s.probe(metricsHandler.ServeHTTP))
	}
}

// api wraps the handler of an API route in the server's middleware,
// outermost first:
//
//   - trace: the server span, named by the route, and otelhttp's metrics;
//   - observe: answers 500 after a panic, counts the request in
//     http_requests_total and http_request_duration_seconds, logs it;
//   - limitSize: 414 and 431 for an oversized request target or header;
//   - noBody: 413 for a body on a route that takes its parameters in the
//     query, before any of it is read;
//   - admit: the bound of API requests in flight (503 overloaded).
//
// A request that matches no route is traced, counted and size-checked, then
// answered 404 or 405 (see route).
func (s *Server) api(h http.HandlerFunc) http.Handler {
	return chain(h, s.trace, s.observe(true), limitSize, noBody, s.admit)
}

// apiWithBody is api for the route that reads a request body.
func (s *Server) apiWithBody(h http.HandlerFunc) http.Handler {
	return chain(h, s.trace, s.observe(true), limitSize, s.admit)
}

// probe is api for probes and /metrics: neither traced, counted nor
// admitted.
func (s *Server) probe(h http.HandlerFunc) http.Handler {
	return chain(h, s.observe(false), limitSize, noBody)
}

// route serves a request with mux when one of its routes matches it as it
// is. Otherwise the mux would answer 404 or 405 in plain text, or redirect a
// path with "." or ".." segments or doubled slashes: notFound answers
// instead.
func (s *Server) route(mux *http.ServeMux) http.Handler {
	unmatched := chain(notFound(mux), s.trace, s.observe(true), limitSize)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" || !isCleanPath(r.URL.Path) {
			unmatched.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// chain wraps h in middleware, the first outermost.
func chain(h http.Handler, middleware ...func(http.Handler) http.Handler) http.Handler {
	for _, m := range slices.Backward(middleware) {
		h = m(h)
	}
	return h
}

// Handler returns the root handler of the API.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler returns the root handler of the admin API alone when
// Options.SeparateAdmin is set and the admin API is enabled; else nil.
func (s *Server) AdminHandler() http.Handler { return s.adminHandler }

// SetShuttingDown makes /readyz answer 503 from now on, so that load
// balancers stop sending traffic before the server stops.
func (s *Server) SetShuttingDown() { s.shuttingDown.Store(true) }
