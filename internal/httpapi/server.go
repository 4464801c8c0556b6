// Package httpapi is the HTTP adapter of the flash-sale service. It decodes
// requests, calls *flashsale.Service and encodes its answers and errors as
// JSON, with OpenTelemetry traces and metrics and a log line per request.
package httpapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// instrumentationName names the tracer and the meter of this package.
const instrumentationName = "github.com/flashsale/flashsale/internal/httpapi"

// maxBodyBytes bounds every request body.
const maxBodyBytes = 4 << 10

// Limits of the request line and header, checked before routing so that an
// oversized request gets a JSON error (the API's own parameters need far
// less). The server's http.Server.MaxHeaderBytes must stay above both
// together: past it net/http answers a plain-text 431 itself, before any
// handler runs.
const (
	// MaxURIBytes bounds the request target (path and query): 414 above it,
	// and above maxQueryLen for the query alone.
	MaxURIBytes = 8 << 10
	// MaxHeaderBytes bounds the header fields, Host included, counted as
	// "Name: value\r\n" lines: 431 above it.
	MaxHeaderBytes = 16 << 10
)

// unmatchedLabel is the handler label of requests that matched no route.
const unmatchedLabel = "unmatched"

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
	// RateLimits are the abuse limits of checkout and purchase; nil or
	// every limit off: none. The server keeps the pointer and logs its
	// warnings to Logger.
	RateLimits *RateLimits
	// Refusals counts the checkouts shed by admission or refused by the
	// rate limits; nil: they are not counted.
	Refusals RefusalLog
}

// Server serves the HTTP API of a flashsale.Service.
type Server struct {
	svc     *flashsale.Service
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *metrics

	adminEnabled bool
	adminHash    [sha256.Size]byte // SHA-256 of the admin token

	checks       []check // sorted by name
	readings     readings
	started      time.Time
	shuttingDown atomic.Bool

	limits     *RateLimits   // nil: no abuse limits
	addrs      *RateLimits   // the client address as the limits see it, limits on or off
	adminGuard *adminGuard   // failed admin authentications by client address
	refusals   RefusalLog    // nil: refused checkouts are not counted
	slots      chan struct{} // admission: one token per API request in flight; nil: no bound
	queueWait  time.Duration

	mux          *http.ServeMux
	adminMux     *http.ServeMux   // the admin API when served on its own; else nil
	routes       map[string]route // by ServeMux pattern; read-only once built
	untraced     map[string]bool  // paths of probes, neither traced nor counted
	handler      http.Handler
	adminHandler http.Handler // nil unless adminMux is set
}

// route is what the server knows of a registered pattern.
type route struct {
	label string             // handler label of metrics: the pattern's path
	api   bool               // counted in the http_request* metrics
	body  bool               // takes a request body (only POST /admin/sales)
	attr  attribute.KeyValue // http.route of the server span
}

// NewServer returns a Server for svc. It creates the telemetry instruments
// once, so a Server should be created once per process.
func NewServer(svc *flashsale.Service, opts Options) (*Server, error) {
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
	m, err := newMetrics(mp.Meter(instrumentationName))
	if err != nil {
		return nil, fmt.Errorf("httpapi: create instruments: %w", err)
	}
	s := &Server{
		svc:          svc,
		log:          log,
		tracer:       tp.Tracer(instrumentationName),
		metrics:      m,
		adminEnabled: opts.AdminToken != "",
		adminHash:    sha256.Sum256([]byte(opts.AdminToken)),
		started:      time.Now(),
		mux:          http.NewServeMux(),
		routes:       make(map[string]route),
		untraced:     make(map[string]bool),
		queueWait:    opts.QueueWait,
		refusals:     opts.Refusals,
	}
	if opts.MaxInFlight > 0 {
		s.slots = make(chan struct{}, opts.MaxInFlight)
	}
	rl := opts.RateLimits
	if rl == nil {
		rl = &RateLimits{}
	}
	rl.log = log
	if err := rl.prepare(); err != nil {
		return nil, err
	}
	if rl.active() {
		s.limits = rl
	}
	s.addrs, s.adminGuard = rl, newAdminGuard()
	for _, name := range slices.Sorted(maps.Keys(opts.Checks)) {
		fn := opts.Checks[name]
		if fn == nil {
			return nil, fmt.Errorf("httpapi: check %q is nil", name)
		}
		s.checks = append(s.checks, check{name: name, fn: fn})
	}
	s.readings = s.newReadings()
	if err := s.registerAdmissionGauge(mp.Meter(instrumentationName)); err != nil {
		return nil, fmt.Errorf("httpapi: create instruments: %w", err)
	}
	if err := s.registerHealthGauge(mp.Meter(instrumentationName)); err != nil {
		return nil, fmt.Errorf("httpapi: create instruments: %w", err)
	}
	if opts.SeparateAdmin && s.adminEnabled {
		s.adminMux = http.NewServeMux()
	}
	s.registerRoutes(opts.MetricsHandler)
	instrument := func(mux *http.ServeMux) http.Handler {
		return otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(mux, w, r) }), "flashsale",
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithMeterProvider(mp),
			otelhttp.WithPropagators(prop),
			otelhttp.WithSpanNameFormatter(spanName),
			otelhttp.WithFilter(func(r *http.Request) bool { return !s.untraced[r.URL.Path] }),
		)
	}
	s.handler = instrument(s.mux)
	if s.adminMux != nil {
		s.adminHandler = instrument(s.adminMux)
	}
	return s, nil
}

// Handler returns the root handler of the API, instrumented with otelhttp.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler returns the root handler of the admin API alone when
// Options.SeparateAdmin is set and the admin API is enabled; else nil.
func (s *Server) AdminHandler() http.Handler { return s.adminHandler }

// SetShuttingDown makes /readyz answer 503 from now on, so that load
// balancers stop sending traffic before the server stops.
func (s *Server) SetShuttingDown() { s.shuttingDown.Store(true) }

// registerRoutes mounts every route of the API on the mux.
func (s *Server) registerRoutes(metricsHandler http.Handler) {
	s.handle(checkoutPattern, true, s.handleCheckout)
	s.handle("POST /purchase", true, s.handlePurchase)
	s.handle("GET /sales/active", true, s.handleActiveSale)
	s.handle("GET /sales/{id}", true, s.handleSale)
	s.handle("GET /sales/{id}/items", true, s.handleSaleItems)
	admin := route{api: true, body: true}
	switch {
	case s.adminMux != nil:
		s.handleOn(s.adminMux, "POST /admin/sales", admin, s.handleCreateSale)
	case s.adminEnabled:
		s.handleOn(s.mux, "POST /admin/sales", admin, s.handleCreateSale)
	}
	s.handle("GET /health", false, s.handleHealth)
	s.handle("GET /livez", false, s.handleLivez)
	s.handle("GET /readyz", false, s.handleReadyz)
	if metricsHandler != nil {
		s.handle("GET /metrics", false, metricsHandler.ServeHTTP)
	}
}

// handle registers h for pattern, a route that takes no request body. API
// routes are traced and counted; the others (probes and /metrics) are
// neither.
func (s *Server) handle(pattern string, api bool, h http.HandlerFunc) {
	s.handleOn(s.mux, pattern, route{api: api}, h)
}

// handleOn registers h for pattern on mux, as the kind of route rt says.
func (s *Server) handleOn(mux *http.ServeMux, pattern string, rt route, h http.HandlerFunc) {
	_, path, _ := strings.Cut(pattern, " ")
	rt.label, rt.attr = path, semconv.HTTPRoute(path)
	s.routes[pattern] = rt
	api := rt.api
	if !api {
		s.untraced[path] = true
	}
	mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nameSpan(r, pattern, rt)
		if api {
			if err := s.admit(r.Context()); err != nil {
				if pattern == checkoutPattern {
					s.refuse(RefusedOverloaded, "")
				}
				s.writeError(w, r, err)
				return
			}
			defer s.release()
		}
		h(w, r)
	}))
}

// nameSpan names r's server span by its route: otelhttp named it before
// routing.
func nameSpan(r *http.Request, pattern string, rt route) {
	span := trace.SpanFromContext(r.Context())
	span.SetName(pattern)
	span.SetAttributes(rt.attr)
}

// admit takes a slot for an API request, waiting up to queueWait (and no
// longer than the request's own deadline) while all are taken.
func (s *Server) admit(ctx context.Context) error {
	if s.slots == nil {
		return nil
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.queueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return flashsale.Errorf(flashsale.EOverloaded, "too many requests in flight, retry shortly")
}

func (s *Server) release() {
	if s.slots != nil {
		<-s.slots
	}
}

// registerAdmissionGauge registers http_admission_slots_in_use: the API
// requests holding an admission slot at each collection (0 when admission is
// unbounded), the saturation MAX_INFLIGHT bounds.
func (s *Server) registerAdmissionGauge(meter metric.Meter) error {
	_, err := meter.Int64ObservableGauge("http_admission_slots_in_use",
		metric.WithDescription("API requests holding an admission slot (at most MAX_INFLIGHT)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(len(s.slots)))
			return nil
		}))
	return err
}

// serve routes r on mux, answering JSON errors for oversized requests and
// for unknown routes and methods, and recovers from panics. It passes r
// itself to the mux so that otelhttp sees the r.Pattern the mux sets.
func (s *Server) serve(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	defer func() { s.finish(rw, r, start, recover()) }()
	h, pattern := mux.Handler(r)
	if err := checkRequestSize(r); err != nil {
		// Rejected before the route's handler (and its admission slot),
		// but labelled with the route it was meant for.
		if rt, ok := s.routes[pattern]; ok {
			r.Pattern = pattern
			nameSpan(r, pattern, rt)
		}
		s.writeError(rw, r, err)
		return
	}
	if rt, ok := s.routes[pattern]; ok && !rt.body && hasBody(r) {
		// Refused before the handler, hence before its admission slot: a
		// client trickling a body it was never asked for holds no slot.
		r.Pattern = pattern
		nameSpan(r, pattern, rt)
		refuseBody(rw)
		s.writeError(rw, r, flashsale.Errorf(eTooLarge, "%s takes no request body: its parameters are in the query string", pattern))
		return
	}
	if pattern == "" || !isCleanPath(r.URL.Path) {
		// A path with "." or ".." segments or doubled slashes is not one of
		// the API's: the mux would redirect it, in HTML; it is a JSON 404.
		s.unmatched(rw, r, h)
		return
	}
	mux.ServeHTTP(rw, r)
}

// isCleanPath reports whether p is already in the canonical form ServeMux
// routes without redirecting: rooted, no "." or ".." segments, no doubled
// slashes.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c == p
}

// checkRequestSize returns eURITooLong or eHeadersTooLarge for a request
// over MaxURIBytes, maxQueryLen or MaxHeaderBytes.
func checkRequestSize(r *http.Request) error {
	if len(r.RequestURI) > MaxURIBytes || len(r.URL.RawQuery) > maxQueryLen {
		return flashsale.Errorf(eURITooLong, "the request target must be at most %d bytes, its query at most %d", MaxURIBytes, maxQueryLen)
	}
	if headerBytes(r) > MaxHeaderBytes {
		return flashsale.Errorf(eHeadersTooLarge, "the request header fields must be at most %d bytes", MaxHeaderBytes)
	}
	return nil
}

// headerBytes is the size of r's header fields as sent in HTTP/1.1.
func headerBytes(r *http.Request) int {
	n := len("Host: \r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// unmatched answers a request that matched no route: 405 with Allow when the
// path exists for other methods, else 404. h is the mux's own handler, run
// into a recorder only to learn which of the two it would answer.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &headerRecorder{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		s.writeError(w, r, flashsale.Errorf(flashsale.EMethodNotAllowed, "method not allowed"))
		return
	}
	s.writeError(w, r, flashsale.Errorf(flashsale.ENotFound, "not found"))
}

// finish ends every request: it answers 500 after a panic, records the
// request metrics and logs the request.
func (s *Server) finish(rw *responseWriter, r *http.Request, start time.Time, panicked any) {
	ctx := r.Context()
	if panicked != nil {
		if panicked == http.ErrAbortHandler {
			// Not a bug: the sentinel net/http uses to abort a response.
			panic(panicked)
		}
		s.log.ErrorContext(ctx, "panic serving request",
			slog.String("method", r.Method), slog.String("pattern", r.Pattern),
			slog.Any("panic", panicked), slog.String("stack", string(debug.Stack())))
		if !rw.wroteHeader {
			s.writeError(rw, r, &flashsale.Error{Code: flashsale.EInternal, Message: "internal error", Err: fmt.Errorf("panic: %v", panicked)})
		}
	}
	elapsed := time.Since(start)
	status := rw.statusCode()
	rt, ok := s.routes[r.Pattern]
	if !ok {
		rt = route{label: unmatchedLabel, api: true}
	}
	if rt.api {
		s.metrics.recordRequest(ctx, rt.label, r.Method, status, elapsed)
	}
	s.logRequest(ctx, r, rt, status, elapsed, rw.err)
}

// logRequest logs one request at Debug, or at Error for a 5xx answer of the
// API (Warn when the client went away first); a probe's 503 is an answer, not
// an error, and its causes are logged by the checks. Only the path is logged: the query holds
// user ids and checkout codes.
func (s *Server) logRequest(ctx context.Context, r *http.Request, rt route, status int, elapsed time.Duration, err error) {
	level := slog.LevelDebug
	if status >= 500 && rt.api {
		level = slog.LevelError
		if ctx.Err() != nil {
			level = slog.LevelWarn
		}
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	path := r.URL.Path
	if len(path) > 256 {
		path = path[:256]
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("route", rt.label),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Duration("duration", elapsed))
	if err != nil {
		attrs = append(attrs, slog.String("error_code", flashsale.ErrorCode(err)))
		if status >= 500 {
			attrs = append(attrs, slog.String("err", err.Error()))
		}
	}
	s.log.LogAttrs(ctx, level, "http request", attrs...)
}

// spanName names the server span "METHOD /pattern" once routed, and by the
// method alone before routing or when no route matched ("HTTP" for a
// non-standard method, as semantic conventions say).
func spanName(_ string, r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	if m := normalizeMethod(r.Method); m != methodOther {
		return m
	}
	return "HTTP"
}

// methodOther is the method label of every non-standard method.
const methodOther = "OTHER"

// normalizeMethod bounds the method label of metrics: methods outside the
// standard set become methodOther.
func normalizeMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return methodOther
}

// responseWriter records the status of a response and the error it reports.
type responseWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	err         error // set by writeError
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusCode returns the status sent, 200 when the handler wrote nothing.
func (w *responseWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}

// headerRecorder captures the status and headers of a handler and drops its
// body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }

func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}

func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}
