package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

const testAdminToken = "s3cret-admin-token"

// harness is a Server under test with in-memory telemetry.
type harness struct {
	t      *testing.T
	srv    *Server
	svc    *fakeService
	sale   *flashsale.Sale
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	logs   *testenv.Buffer
}

// newHarness returns a harness whose service is a fakeService.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	svc, sale := newFakeService()
	h := &harness{t: t, svc: svc, sale: sale, reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder(), logs: &testenv.Buffer{}}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	opts.MeterProvider, opts.TracerProvider, opts.Logger = mp, tp, logger
	opts.Propagator = propagation.TraceContext{}
	srv, err := NewServer(svc, opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	h.srv = srv
	return h
}

// do serves one request and returns the recorded response.
func (h *harness) do(method, target string, body io.Reader, header ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(w, r)
	return w
}

// wantError checks a JSON error answer.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if w.Code != status {
		t.Errorf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	wantJSON(t, w)
	var e errorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q is not a JSON error: %v", w.Body, err)
	}
	if e.Error != code {
		t.Errorf("error = %q, want %q (message %q)", e.Error, code, e.Message)
	}
	if e.Message == "" {
		t.Errorf("error %q has no message", e.Error)
	}
}

// wantJSON checks the Content-Type of an answer.
func wantJSON(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
}

// decode unmarshals a successful JSON answer into v.
func decode(t *testing.T, w *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	wantJSON(t, w)
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
}

// collect reads every metric recorded so far.
func (h *harness) collect() metricdata.ResourceMetrics {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// counter returns the value of the data point of the named Int64 counter
// with exactly the given attributes, 0 when there is none.
func (h *harness) counter(name string, attrs ...attribute.KeyValue) int64 {
	h.t.Helper()
	want := attribute.NewSet(attrs...)
	for _, sm := range h.collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				h.t.Fatalf("%s is a %T", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// histogramCount returns the count of the named histogram's data point with
// exactly the given attributes.
func (h *harness) histogramCount(name string, attrs ...attribute.KeyValue) uint64 {
	h.t.Helper()
	want := attribute.NewSet(attrs...)
	for _, sm := range h.collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			hist, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				h.t.Fatalf("%s is a %T", name, m.Data)
			}
			for _, dp := range hist.DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Count
				}
			}
		}
	}
	return 0
}

// hasDataPoint reports whether the named histogram has a data point with
// the given attribute among others.
func (h *harness) hasDataPoint(name string, kv attribute.KeyValue) bool {
	h.t.Helper()
	for _, sm := range h.collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if hist, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				for _, dp := range hist.DataPoints {
					if v, ok := dp.Attributes.Value(kv.Key); ok && v == kv.Value {
						return true
					}
				}
			}
		}
	}
	return false
}

// span returns the ended span of the given name.
func (h *harness) span(name string) sdktrace.ReadOnlySpan {
	h.t.Helper()
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			return s
		}
	}
	var names []string
	for _, s := range h.spans.Ended() {
		names = append(names, s.Name())
	}
	h.t.Fatalf("no span %q among %q", name, names)
	return nil
}

// spanAttr returns the value of a span attribute and whether it is set.
func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func requestAttrs(handler, method, status string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("handler", handler),
		attribute.String("method", method),
		attribute.String("status_code", status),
	}
}

func TestNewServerRejectsNilService(t *testing.T) {
	if _, err := NewServer(nil, Options{}); err == nil {
		t.Fatal("NewServer(nil) succeeded")
	}
}

func TestNewServerDefaults(t *testing.T) {
	svc, _ := newFakeService()
	s, err := NewServer(svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/checkout", nil))
	wantError(t, w, http.StatusBadRequest, flashsale.EInvalidUserID)
}

func TestNewServerRejectsNilCheck(t *testing.T) {
	svc, _ := newFakeService()
	if _, err := NewServer(svc, Options{Checks: map[string]func(context.Context) error{"database": nil}}); err == nil {
		t.Fatal("NewServer accepted a nil check")
	}
}

func TestUnknownRoute(t *testing.T) {
	h := newHarness(t, Options{})
	for _, target := range []string{"/", "/nope", "/sales", "/sales/1/items/2", "/checkout/x"} {
		w := h.do("GET", target, nil)
		wantError(t, w, http.StatusNotFound, flashsale.ENotFound)
	}
	if n := h.counter("http_requests_total", requestAttrs("unmatched", "GET", "404")...); n != 5 {
		t.Errorf("unmatched 404s counted %d times, want 5", n)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := newHarness(t, Options{})
	tests := []struct{ method, target, allow string }{
		{"GET", "/checkout", "POST"},
		{"PUT", "/purchase", "POST"},
		{"POST", "/sales/1", "GET, HEAD"},
		{"DELETE", "/sales/active", "GET, HEAD"},
		{"POST", "/health", "GET, HEAD"},
	}
	for _, tt := range tests {
		w := h.do(tt.method, tt.target, nil)
		wantError(t, w, http.StatusMethodNotAllowed, flashsale.EMethodNotAllowed)
		if got := w.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.target, got, tt.allow)
		}
	}
	if n := h.counter("http_requests_total", requestAttrs("unmatched", "GET", "405")...); n != 1 {
		t.Errorf("GET 405 counted %d times, want 1", n)
	}
	// Odd methods share one label value.
	h.do("BREW", "/checkout", nil)
	if n := h.counter("http_requests_total", requestAttrs("unmatched", "OTHER", "405")...); n != 1 {
		t.Errorf("BREW 405 counted %d times under OTHER, want 1", n)
	}
}

func TestRecoverAnswers500(t *testing.T) {
	h := newHarness(t, Options{})
	h.srv.mux.Handle("GET /boom", h.srv.api(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	w := h.do("GET", "/boom", nil)
	wantError(t, w, http.StatusInternalServerError, flashsale.EInternal)
	logs := h.logs.String()
	if !strings.Contains(logs, "panic serving request") || !strings.Contains(logs, "server_test.go") {
		t.Errorf("panic not logged with its stack:\n%s", logs)
	}
	if n := h.counter("http_requests_total", requestAttrs("/boom", "GET", "500")...); n != 1 {
		t.Errorf("panic counted %d times as a 500, want 1", n)
	}
	if s := h.span("GET /boom"); s.Status().Code.String() != "Error" {
		t.Errorf("server span status = %v, want Error", s.Status())
	}
}

func TestServerSpanNamedByRoute(t *testing.T) {
	h := newHarness(t, Options{})
	h.do("POST", "/checkout?user_id=u1&id=abc", nil)
	s := h.span("POST /checkout")
	if v, ok := spanAttr(s, "http.route"); !ok || v.AsString() != "/checkout" {
		t.Errorf("http.route = %v, want /checkout", v.Emit())
	}
	h.do("GET", "/sales/0/items", nil)
	h.span("GET /sales/{id}/items")
	// An unmatched request is named by its method alone.
	h.do("GET", "/nope", nil)
	h.span("GET")
	h.do("BREW", "/nope", nil)
	h.span("HTTP")
}

func TestIncomingTraceContextIsContinued(t *testing.T) {
	h := newHarness(t, Options{})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	h.do("POST", "/checkout", nil, "traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	if got := h.span("POST /checkout").SpanContext().TraceID().String(); got != traceID {
		t.Errorf("trace id = %s, want %s", got, traceID)
	}
}

func TestRequestLog(t *testing.T) {
	h := newHarness(t, Options{})
	h.do("POST", "/checkout?user_id=secret-user&id=1x", nil)
	logs := h.logs.String()
	if !strings.Contains(logs, "http request") || !strings.Contains(logs, "status=400") || !strings.Contains(logs, "error_code=invalid_item_id") {
		t.Errorf("request not logged:\n%s", logs)
	}
	if strings.Contains(logs, "secret-user") {
		t.Errorf("user id logged:\n%s", logs)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// assertNoSecrets fails if any span attribute or event, or any metric
// attribute, holds one of the given values.
func assertNoSecrets(t *testing.T, h *harness, secrets ...string) {
	t.Helper()
	check := func(where string, kv attribute.KeyValue) {
		v := kv.Value.Emit()
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				t.Errorf("%s attribute %s=%q holds %q", where, kv.Key, v, s)
			}
		}
	}
	for _, s := range h.spans.Ended() {
		for _, kv := range s.Attributes() {
			check("span "+s.Name(), kv)
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				check("span event "+s.Name(), kv)
			}
		}
	}
	for name, kv := range h.metricAttributes() {
		check("metric "+name, kv)
	}
}

// metricAttributes yields every attribute of every data point the harness's
// meter collected, with its instrument's name.
func (h *harness) metricAttributes() iter.Seq2[string, attribute.KeyValue] {
	return func(yield func(string, attribute.KeyValue) bool) {
		for _, sm := range h.collect().ScopeMetrics {
			for _, m := range sm.Metrics {
				var sets []attribute.Set
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					for _, dp := range d.DataPoints {
						sets = append(sets, dp.Attributes)
					}
				case metricdata.Sum[float64]:
					for _, dp := range d.DataPoints {
						sets = append(sets, dp.Attributes)
					}
				case metricdata.Histogram[int64]:
					for _, dp := range d.DataPoints {
						sets = append(sets, dp.Attributes)
					}
				case metricdata.Histogram[float64]:
					for _, dp := range d.DataPoints {
						sets = append(sets, dp.Attributes)
					}
				}
				for _, set := range sets {
					for _, kv := range set.ToSlice() {
						if !yield(m.Name, kv) {
							return
						}
					}
				}
			}
		}
	}
}

func TestOverTheNetwork(t *testing.T) {
	h := newHarness(t, Options{Checks: checks(nil, nil)})
	ts := httptest.NewServer(h.srv.Handler())
	defer ts.Close()
	resp, err := ts.Client().Post(ts.URL+"/checkout?user_id=u1&id=1", "text/plain", strings.NewReader(strings.Repeat("x", 64<<10)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), eTooLarge) {
		t.Errorf("oversized body: %d %s", resp.StatusCode, body)
	}
	for _, tt := range []struct {
		method, path string
		status       int
	}{{"GET", "/livez", 200}, {"HEAD", "/readyz", 200}, {"GET", "/checkout", 405}, {"GET", "/sales/x", 400}, {"POST", "/purchase?code=x", 400}} {
		req, _ := http.NewRequest(tt.method, ts.URL+tt.path, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}

// TestResponsesWithoutReflection checks that the responses written without
// reflection are byte for byte what encoding/json writes, for strings that
// need no escaping and for every kind that does.
func TestResponsesWithoutReflection(t *testing.T) {
	for _, s := range []string{
		"", "AAAAAGlRqYAbc-_xyz0123456789ABCDEF", "2026-12-04T22:00:00Z", "item_sold",
		`say "hi"`, `back\slash`, "tab\there", "new\nline", "\x00\x1f\x7f", "<script>&amp;</script>",
		"héllo wörld", "\u2028\u2029", "bad utf-8 \xff\xfe", "emoji 🛒",
	} {
		for _, v := range []jsonAppender{
			checkoutResponse{Code: s, ItemsCount: 7, SaleEndsAt: s},
			checkoutResponse{Code: s, ItemsCount: -1},
			errorResponse{Error: s, Message: s},
		} {
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.appendJSON(nil); string(got) != string(want) {
				t.Errorf("%#v:\n got %s\nwant %s", v, got, want)
			}
		}
	}
}
