package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 4 << 10

// Limits of the request line and header, so that an oversized request gets a
// JSON error (the API's own parameters need far less). The server's
// http.Server.MaxHeaderBytes must stay above both together: past it net/http
// answers a plain-text 431 itself, before any handler runs.
const (
	// MaxURIBytes bounds the request target (path and query): 414 above it,
	// and above maxQueryLen for the query alone.
	MaxURIBytes = 8 << 10
	// MaxHeaderBytes bounds the header fields, Host included, counted as
	// "Name: value\r\n" lines: 431 above it.
	MaxHeaderBytes = 16 << 10
)

// unmatchedLabel is the route label of requests that matched no route.
const unmatchedLabel = "unmatched"

// routeLabel is the route of r as metrics and logs label it: the path of the
// pattern that matched it.
func routeLabel(r *http.Request) string {
	if _, p, ok := strings.Cut(r.Pattern, " "); ok {
		return p
	}
	return unmatchedLabel
}

// observe answers 500 after a panic of the handler, records the request in
// the request metrics when counted, and logs it.
func (s *Server) observe(counted bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rw := &responseWriter{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					s.recovered(rw, r, p)
				}
				elapsed, status := time.Since(start), rw.statusCode()
				if counted {
					s.metrics.recordRequest(r.Context(), r, status, elapsed)
				}
				s.logRequest(r, counted, status, elapsed, rw.err)
			}()
			next.ServeHTTP(rw, r)
		})
	}
}

// recovered logs the panic p of a handler with its stack and answers 500 if
// nothing was answered yet.
func (s *Server) recovered(rw *responseWriter, r *http.Request, p any) {
	if p == http.ErrAbortHandler {
		panic(p) // not a bug: the sentinel net/http uses to abort a response
	}
	s.log.ErrorContext(r.Context(), "panic serving request",
		slog.String("method", r.Method), slog.String("pattern", r.Pattern),
		slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	if !rw.wroteHeader {
		writeError(rw, r, &flashsale.Error{Code: flashsale.EInternal, Message: "internal error", Err: fmt.Errorf("panic: %v", p)})
	}
}

// logRequest logs one request at Debug, or at Error for a 5xx answer of the
// API (Warn when the client went away first); a probe's 503 is an answer, not
// an error, and its causes are logged by the checks. Only the path is
// logged: the query holds user ids and checkout codes.
func (s *Server) logRequest(r *http.Request, api bool, status int, elapsed time.Duration, err error) {
	ctx := r.Context()
	level := slog.LevelDebug
	if status >= 500 && api {
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
		slog.String("route", routeLabel(r)),
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

// limitSize answers 414 or 431 to a request over MaxURIBytes, maxQueryLen or
// MaxHeaderBytes.
func limitSize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > MaxURIBytes || len(r.URL.RawQuery) > maxQueryLen {
			writeError(w, r, flashsale.Errorf(eURITooLong, "the request target must be at most %d bytes, its query at most %d", MaxURIBytes, maxQueryLen))
			return
		}
		if headerBytes(r) > MaxHeaderBytes {
			writeError(w, r, flashsale.Errorf(eHeadersTooLarge, "the request header fields must be at most %d bytes", MaxHeaderBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
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

// noBody answers 413 to a request that announces a body (a Content-Length
// above zero, or chunked), on a route that takes none. It runs before
// admission: a client trickling a body it was never asked for holds no slot.
func noBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		refuseBody(w)
		writeError(w, r, flashsale.Errorf(eTooLarge, "%s takes no request body: its parameters are in the query string", r.Pattern))
	})
}

// refuseBody prepares the answer to a request whose body the route will not
// read: the connection is closed after the answer, and net/http reads none
// of the body, neither before the answer (to keep the connection) nor after
// it (to drain it), so a client sending it a byte at a time holds nothing
// once answered.
func refuseBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	// Reading the body now fails at once; the error is only that the
	// writer cannot set deadlines (a recorder in tests).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// admit holds an admission slot while the handler runs, waiting up to
// queueWait (and no longer than the request's own deadline) while all are
// taken; then it answers 503 overloaded, and counts a shed checkout.
func (s *Server) admit(next http.Handler) http.Handler {
	if s.slots == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.acquire(r.Context()) {
			if r.Pattern == checkoutPattern {
				s.refuse(RefusedOverloaded, "")
			}
			writeError(w, r, flashsale.Errorf(flashsale.EOverloaded, "too many requests in flight, retry shortly"))
			return
		}
		defer func() { <-s.slots }()
		next.ServeHTTP(w, r)
	})
}

// acquire takes an admission slot, reporting whether it got one in time.
func (s *Server) acquire(ctx context.Context) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.queueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
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

// notFound answers a request that matched no route of mux: 405 with Allow
// when the path exists for other methods, else 404. It runs the mux's own
// handler into a recorder only to learn which of the two it would answer.
func notFound(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h, _ := mux.Handler(r)
		rec := &headerRecorder{header: make(http.Header)}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, r, flashsale.Errorf(flashsale.EMethodNotAllowed, "method not allowed"))
			return
		}
		writeError(w, r, flashsale.Errorf(flashsale.ENotFound, "not found"))
	}
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
