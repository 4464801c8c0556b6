package testenv

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is an in-process OTLP receiver (HTTP/protobuf or gRPC) that
// records what it is sent. Its methods are safe for concurrent use.
type OTLPReceiver struct {
	mu        sync.Mutex
	paths     []string
	headers   []http.Header
	spans     []*tracepb.Span
	metrics   []string // metric names, one per data point batch
	logs      []*logspb.LogRecord
	resources []*resourcepb.Resource
}

// StartOTLPHTTP starts an OTLP/HTTP receiver on 127.0.0.1 and returns it
// with its base URL. It serves any path ending in /v1/traces, /v1/metrics or
// /v1/logs, gzip or not, and stops when the test ends.
func StartOTLPHTTP(t testing.TB) (*OTLPReceiver, string) {
	t.Helper()
	r := &OTLPReceiver{}
	return r, serveLoopback(t, r)
}

// StartOTLPSink starts an OTLPSink on 127.0.0.1 and returns its base URL.
// It stops when the test ends.
func StartOTLPSink(t testing.TB) string {
	t.Helper()
	return serveLoopback(t, NewOTLPSink())
}

// serveLoopback serves h on 127.0.0.1 until the test ends and returns its URL.
func serveLoopback(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// StartOTLPGRPC starts an OTLP/gRPC receiver (trace, metrics and logs services) on
// 127.0.0.1 and returns it with its host:port. It stops when the test ends.
func StartOTLPGRPC(t testing.TB) (*OTLPReceiver, string) {
	t.Helper()
	r := &OTLPReceiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcTraces{r: r})
	colmetricspb.RegisterMetricsServiceServer(srv, grpcMetrics{r: r})
	collogspb.RegisterLogsServiceServer(srv, grpcLogs{r: r})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r, ln.Addr().String()
}

// SpanNames returns the names of the spans received so far, in order.
func (r *OTLPReceiver) SpanNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, len(r.spans))
	for i, s := range r.spans {
		names[i] = s.GetName()
	}
	return names
}

// Spans returns the spans received so far.
func (r *OTLPReceiver) Spans() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// MetricNames returns the names of the metrics received so far, with repeats.
func (r *OTLPReceiver) MetricNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.metrics)
}

// Logs returns the log records received so far, in order.
func (r *OTLPReceiver) Logs() []*logspb.LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logs)
}

// Resources returns the resources of every batch received so far.
func (r *OTLPReceiver) Resources() []*resourcepb.Resource {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resources)
}

// Paths returns the URL paths of the HTTP requests received so far.
func (r *OTLPReceiver) Paths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.paths)
}

// Headers returns the headers of the HTTP requests received so far.
func (r *OTLPReceiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.headers)
}

func (r *OTLPReceiver) addTraces(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		r.resources = append(r.resources, rs.GetResource())
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
}

func (r *OTLPReceiver) addMetrics(req *colmetricspb.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		r.resources = append(r.resources, rm.GetResource())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				r.metrics = append(r.metrics, m.GetName())
			}
		}
	}
}

func (r *OTLPReceiver) addLogs(req *collogspb.ExportLogsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.GetResourceLogs() {
		r.resources = append(r.resources, rl.GetResource())
		for _, sl := range rl.GetScopeLogs() {
			r.logs = append(r.logs, sl.GetLogRecords()...)
		}
	}
}

// ServeHTTP implements OTLP/HTTP with protobuf payloads.
func (r *OTLPReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
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
	switch {
	case strings.HasSuffix(req.URL.Path, "/traces"):
		var m coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.addTraces(&m)
		resp = &coltracepb.ExportTraceServiceResponse{}
	case strings.HasSuffix(req.URL.Path, "/v1/metrics"):
		var m colmetricspb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.addMetrics(&m)
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	case strings.HasSuffix(req.URL.Path, "/v1/logs"):
		var m collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.addLogs(&m)
		resp = &collogspb.ExportLogsServiceResponse{}
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

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	r *OTLPReceiver
}

func (g grpcTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.addTraces(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type grpcMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *OTLPReceiver
}

func (g grpcMetrics) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	g.r.addMetrics(req)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

type grpcLogs struct {
	collogspb.UnimplementedLogsServiceServer
	r *OTLPReceiver
}

func (g grpcLogs) Export(_ context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	g.r.addLogs(req)
	return &collogspb.ExportLogsServiceResponse{}, nil
}

// SetOTelEnv sets the OpenTelemetry environment of a test, which the SDK and
// its exporters read from the process: every inherited OTEL_* variable is
// cleared, then the OTEL_* keys of env are set. The previous values come
// back when the test ends (it must not be parallel).
func SetOTelEnv(tb testing.TB, env map[string]string) {
	tb.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			tb.Setenv(k, "")
			os.Unsetenv(k) // empty is not always unset; Setenv restores it
		}
	}
	for k, v := range env {
		if strings.HasPrefix(k, "OTEL_") {
			tb.Setenv(k, v)
		}
	}
}
