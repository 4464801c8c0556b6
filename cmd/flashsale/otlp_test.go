package main

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestOTLPExport runs the service with OTLP pointed at an in-process
// receiver, over HTTP and over gRPC: the spans of a checkout, the catalog
// metrics, the runtime series and the log records arrive, and /metrics keeps
// working beside the push.
func TestOTLPExport(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			var rcv *testenv.OTLPReceiver
			var endpoint string
			if protocol == "grpc" {
				var addr string
				rcv, addr = testenv.StartOTLPGRPC(t)
				endpoint = "http://" + addr
			} else {
				rcv, endpoint = testenv.StartOTLPHTTP(t)
			}
			inst := MustStart(t, MustEnv(t, env{
				"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
				"OTEL_METRIC_EXPORT_INTERVAL": "200",
				"OTEL_SERVICE_NAME":           "flashsale-otlp-test",
				"LOG_LEVEL":                   "info",
			}))
			sale := MustCreateSale(t, inst.URL, 3, time.Hour)
			if _, st, _ := checkout(t, inst.URL, "otlp1", sale.ID*1_000_000+1); st != http.StatusOK {
				t.Fatalf("checkout: %d", st)
			}
			scrapeMetrics(t, inst.URL) // the pull path works with the push on
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && !(slices.Contains(rcv.MetricNames(), "checkout_attempts_total") &&
				slices.Contains(rcv.MetricNames(), "sale_items_sold_current")) {
				time.Sleep(50 * time.Millisecond)
			}
			inst.Stop(t) // flushes the batch span processor
			for _, want := range []string{"POST /checkout", "sale.checkout", "POST /admin/sales"} {
				if !slices.Contains(rcv.SpanNames(), want) {
					t.Errorf("span %q not received; got %v", want, rcv.SpanNames())
				}
			}
			for _, want := range []string{"checkout_attempts_total", "http_request_duration_seconds", "http_requests_total",
				"sale_items_sold_current", "db_query_duration_seconds", "redis_command_duration_seconds", "redis_lock_attempts_total",
				"go_goroutines", "process_resident_memory_bytes"} {
				if !slices.Contains(rcv.MetricNames(), want) {
					t.Errorf("metric %q not received", want)
				}
			}
			var ready bool
			for _, rec := range rcv.Logs() {
				ready = ready || rec.GetBody().GetStringValue() == "ready"
			}
			if !ready {
				t.Errorf("log record \"ready\" not received; got %d records", len(rcv.Logs()))
			}
			for _, res := range rcv.Resources() {
				found := false
				for _, kv := range res.GetAttributes() {
					found = found || (kv.GetKey() == "service.name" && kv.GetValue().GetStringValue() == "flashsale-otlp-test")
				}
				if !found {
					t.Errorf("resource without service.name=flashsale-otlp-test: %v", res)
					break
				}
			}
		})
	}
}
