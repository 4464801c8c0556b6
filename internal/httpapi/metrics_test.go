package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// TestServerDurationAsOtelhttp checks that http.server.request.duration,
// which the server records itself, has the attributes, the unit and the
// buckets otelhttp gives it (less the client-controlled server address and
// port, which the service's view drops), for matched, unmatched and
// non-standard-method requests.
func TestServerDurationAsOtelhttp(t *testing.T) {
	for _, tc := range []struct{ method, target string }{
		{"POST", "/checkout?user_id=alice&id=x"},
		{"GET", "/sales/active"},
		{"GET", "/no/such/route"},
		{"get", "/sales/active"},
		{"BREW", "/checkout"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			h := newHarness(t, Options{})
			w := h.do(tc.method, tc.target, nil)
			got := serverDuration(t, h.collect())

			// otelhttp's own instrument, for a request that matches or not
			// the same pattern and answers the same status.
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer func() { _ = mp.Shutdown(context.Background()) }()
			status := w.Code
			mux := http.NewServeMux()
			if p := h.pattern(tc.method, tc.target); p != "" {
				mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) })
			} else {
				mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { r.Pattern = ""; w.WriteHeader(status) })
			}
			ref := otelhttp.NewMiddleware("ref", otelhttp.WithMeterProvider(mp))(mux)
			ref.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.target, nil))
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			want := serverDuration(t, rm)
			wantAttrs, _ := want.point.Attributes.Filter(func(kv attribute.KeyValue) bool {
				return kv.Key != semconv.ServerAddressKey && kv.Key != semconv.ServerPortKey
			})
			if !got.point.Attributes.Equals(&wantAttrs) {
				t.Errorf("attributes\n got %v\nwant %v", got.point.Attributes.ToSlice(), wantAttrs.ToSlice())
			}
			if got.unit != want.unit || !slices.Equal(got.point.Bounds, want.point.Bounds) {
				t.Errorf("unit %q buckets %v, want %q %v", got.unit, got.point.Bounds, want.unit, want.point.Bounds)
			}
		})
	}
}

// pattern returns the pattern of the server's mux that the request matches,
// "" when none does.
func (h *harness) pattern(method, target string) string {
	_, p := h.srv.mux.Handler(httptest.NewRequest(method, target, nil))
	return p
}

type durationPoint struct {
	unit  string
	point metricdata.HistogramDataPoint[float64]
}

// serverDuration returns the one data point of http.server.request.duration.
func serverDuration(t *testing.T, rm metricdata.ResourceMetrics) durationPoint {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if hist, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "http.server.request.duration" {
				if len(hist.DataPoints) != 1 {
					t.Fatalf("%d data points, want 1", len(hist.DataPoints))
				}
				return durationPoint{m.Unit, hist.DataPoints[0]}
			}
		}
	}
	t.Fatal("no http.server.request.duration")
	return durationPoint{}
}
