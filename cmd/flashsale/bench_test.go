package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// BenchmarkCheckout measures accepted checkouts end to end (HTTP, Redis
// script, group-committed attempt row) against real servers, from parallel
// clients with fresh users and unsold items. Side by side, what the abuse
// limits cost: "limits_off"; "limits_user", the per-user limit alone (the
// default configuration: one more Redis call per request); "limits_both",
// per-user and per-address limits (two more calls). The limits are set far
// above the load, so that nothing is refused and only their cost is measured.
func BenchmarkCheckout(b *testing.B) {
	for _, mode := range []struct {
		name string
		env  env
	}{
		{"limits_off", nil},
		{"limits_user", env{"RATE_LIMIT_USER": "1000000"}},
		{"limits_both", env{"RATE_LIMIT_USER": "1000000", "RATE_LIMIT_ADDR": "1000000"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			inst, sale := benchInstance(b, 10_000, mode.env)
			benchCheckouts(b, inst, sale)
		})
	}
}

// BenchmarkCheckoutTelemetry measures what telemetry costs a checkout, side
// by side: "on" is every metric plus every request traced and exported over
// OTLP (to a sink that discards), "ratio_0.01" traces 1% of requests, "off"
// is OTEL_SDK_DISABLED (no instruments, no spans; /metrics keeps the
// process and Go collectors only).
func BenchmarkCheckoutTelemetry(b *testing.B) {
	sink := testenv.StartOTLPSink(b)
	for _, mode := range []struct {
		name string
		env  env
	}{
		{"on", env{"OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_TRACES_SAMPLER": "parentbased_always_on"}},
		{"ratio_0.01", env{"OTEL_EXPORTER_OTLP_ENDPOINT": sink,
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}},
		{"off", env{"OTEL_SDK_DISABLED": "true"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			inst, sale := benchInstance(b, 10_000, mode.env)
			benchCheckouts(b, inst, sale)
		})
	}
}

// benchCheckouts runs b.N checkouts from 16 × GOMAXPROCS clients, ten items
// per user over the sale's items.
func benchCheckouts(b *testing.B, inst *instance, sale loadgen.Sale) {
	parallel(b, func(i int64) {
		user := fmt.Sprintf("bench-%d", i/10)
		item := sale.ID*1_000_000 + 1 + i%int64(sale.TotalItems)
		if _, st, ec := checkout(b, inst.URL, user, item); st != http.StatusOK && ec != "already_in_cart" && ec != "user_limit_reached" {
			b.Fatalf("checkout: %d %s", st, ec)
		}
	})
}

// parallel runs op for i = 1…b.N from 16 × GOMAXPROCS clients, timing only
// that loop.
func parallel(b *testing.B, op func(i int64)) {
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			op(n.Add(1))
		}
	})
}

// BenchmarkPurchase measures purchases of one-item carts end to end.
func BenchmarkPurchase(b *testing.B) {
	inst, sale := benchInstance(b, b.N+1, nil)
	codes := make([]string, b.N)
	for i := range codes {
		r, st, ec := checkout(b, inst.URL, fmt.Sprintf("bench-%d", i), sale.ID*1_000_000+int64(i+1))
		if st != http.StatusOK {
			b.Fatalf("checkout: %d %s", st, ec)
		}
		codes[i] = r.Code
	}
	parallel(b, func(i int64) {
		if r, st, ec := purchase(b, inst.URL, codes[i-1]); st != http.StatusOK || r.TotalPurchased != 1 {
			b.Fatalf("purchase: %d %s %+v", st, ec, r)
		}
	})
}

func benchInstance(b *testing.B, items int, extra env) (*instance, loadgen.Sale) {
	b.Helper()
	e := MustEnv(b, env{"LOG_LEVEL": "error", "DB_MAX_OPEN_CONNS": "32"})
	for k, v := range extra {
		e[k] = v
	}
	inst := MustStart(b, e)
	return inst, MustCreateSale(b, inst.URL, min(items, 999_999), time.Hour)
}
