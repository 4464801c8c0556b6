package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// BenchmarkCheckoutHandler measures what the HTTP layer costs an accepted
// checkout: the whole middleware chain and the handler over a service that
// answers at once, with the default telemetry (every instrument on, spans
// recorded and not exported). Run it with -benchmem: its allocations are
// the request's own, without the network, Redis or PostgreSQL.
func BenchmarkCheckoutHandler(b *testing.B) {
	svc, sale := newFakeService()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	srv, err := NewServer(svc, Options{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	target := "/checkout?user_id=bench&id=" + strconv.FormatInt(flashsale.ItemID(sale.ID, 1), 10)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, target, nil))
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
