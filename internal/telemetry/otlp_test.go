package telemetry_test

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flashsale/flashsale/internal/telemetry"
)

// receiver is an in-process OTLP receiver that records what it is sent.
type receiver struct {
	mu       sync.Mutex
	paths    []string
	headers  []http.Header
	spans    []string // span names
	metrics  []string // metric names
	resource []*resourcepb.Resource
}

func (r *receiver) spanNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

func (r *receiver) metricNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.metrics)
}

func (r *receiver) addTraces(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		r.resource = append(r.resource, rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s.GetName())
			}
		}
	}
}

func (r *receiver) addMetrics(req *colmetricspb.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		r.resource = append(r.resource, rm.GetResource())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				r.metrics = append(r.metrics, m.GetName())
			}
		}
	}
}

// ServeHTTP implements OTLP/HTTP with protobuf payloads on any path ending
// in /v1/traces or /v1/metrics, or on /custom/traces.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()

	var resp proto.Message
	switch req.URL.Path {
	case "/v1/traces", "/custom/traces":
		var m coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.addTraces(&m)
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var m colmetricspb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.addMetrics(&m)
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// newReceiver starts an OTLP/HTTP receiver on 127.0.0.1.
func newReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	r := &receiver{}
	srv := httptest.NewUnstartedServer(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// produce records a span named "checkout" and a checkout_attempts_total
// value through tel, then shuts tel down so that everything is flushed.
func produce(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx, span := tel.TracerProvider.Tracer("test").Start(t.Context(), "checkout")
	c, err := tel.MeterProvider.Meter("test").Int64Counter("checkout_attempts_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1)
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func stringAttr(res *resourcepb.Resource, key string) string {
	for _, kv := range res.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func TestOTLPHTTP(t *testing.T) {
	rcv, url := newReceiver(t)
	tel := setup(t, env(
		"OTEL_EXPORTER_OTLP_ENDPOINT", url,
		"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret%20value",
		"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.name=ignored",
		"OTEL_SERVICE_NAME", "flashsale-test",
	))
	if tel.MetricsHandler == nil {
		t.Error("MetricsHandler is nil: OTLP must come in addition to Prometheus")
	}
	produce(t, tel)

	if got := rcv.spanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	if got := rcv.metricNames(); !slices.Contains(got, "checkout_attempts_total") {
		t.Errorf("received metrics %v, want checkout_attempts_total", got)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, p := range rcv.paths {
		if p != "/v1/traces" && p != "/v1/metrics" {
			t.Errorf("request to %s", p)
		}
	}
	for _, h := range rcv.headers {
		if got := h.Get("X-Api-Key"); got != "secret value" {
			t.Errorf("x-api-key = %q, want %q", got, "secret value")
		}
	}
	for _, res := range rcv.resource {
		for key, want := range map[string]string{
			"service.name":                "flashsale-test",
			"service.version":             "1.2.3",
			"deployment.environment.name": "test",
			"telemetry.sdk.language":      "go",
		} {
			if got := stringAttr(res, key); got != want {
				t.Errorf("resource %s = %q, want %q", key, got, want)
			}
		}
		if stringAttr(res, "host.name") == "" {
			t.Error("resource has no host.name")
		}
	}
}

func TestOTLPPerSignal(t *testing.T) {
	rcv, url := newReceiver(t)
	tel := setup(t, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/custom/traces"))
	produce(t, tel)

	if got := rcv.spanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	if got := rcv.metricNames(); len(got) != 0 {
		t.Errorf("received metrics %v without a metrics endpoint", got)
	}
}

func TestOTLPExporterNone(t *testing.T) {
	for _, tc := range []struct {
		name, key      string
		spans, metrics bool
	}{
		{"traces", "OTEL_TRACES_EXPORTER", false, true},
		{"metrics", "OTEL_METRICS_EXPORTER", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv, url := newReceiver(t)
			tel := setup(t, env("OTEL_EXPORTER_OTLP_ENDPOINT", url, tc.key, "none"))
			produce(t, tel)
			if got := len(rcv.spanNames()) > 0; got != tc.spans {
				t.Errorf("spans received = %v, want %v", got, tc.spans)
			}
			if got := len(rcv.metricNames()) > 0; got != tc.metrics {
				t.Errorf("metrics received = %v, want %v", got, tc.metrics)
			}
		})
	}
}

// TestOTLPOptIn checks that nothing is exported unless getenv asks for it,
// even when the process environment, which the exporters would read
// themselves, names an endpoint.
func TestOTLPOptIn(t *testing.T) {
	rcv, url := newReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "otlp")

	tel := setup(t, env())
	produce(t, tel)
	if got := rcv.spanNames(); len(got) != 0 {
		t.Errorf("received spans %v", got)
	}
	if got := rcv.metricNames(); len(got) != 0 {
		t.Errorf("received metrics %v", got)
	}
}

// grpcReceiver implements the OTLP/gRPC trace service.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	*receiver
}

func (g grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.addTraces(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// grpcMetricsReceiver implements the OTLP/gRPC metrics service.
type grpcMetricsReceiver struct {
	colmetricspb.UnimplementedMetricsServiceServer
	*receiver
}

func (g grpcMetricsReceiver) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	g.addMetrics(req)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

func TestOTLPGRPC(t *testing.T) {
	rcv := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcReceiver{receiver: rcv})
	colmetricspb.RegisterMetricsServiceServer(srv, grpcMetricsReceiver{receiver: rcv})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	tel := setup(t, env(
		"OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String(),
		"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
	))
	produce(t, tel)

	if got := rcv.spanNames(); !slices.Equal(got, []string{"checkout"}) {
		t.Errorf("received spans %v, want [checkout]", got)
	}
	if got := rcv.metricNames(); !slices.Contains(got, "checkout_attempts_total") {
		t.Errorf("received metrics %v, want checkout_attempts_total", got)
	}
}
