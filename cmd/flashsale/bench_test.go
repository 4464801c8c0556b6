package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCheckout measures accepted checkouts end to end (HTTP, Redis
// script, group-committed attempt row) against real servers, from parallel
// clients with fresh users and unsold items.
func BenchmarkCheckout(b *testing.B) {
	inst, sale := benchInstance(b, 10_000)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 16 × GOMAXPROCS concurrent clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			user := fmt.Sprintf("bench-%d", i/10)
			item := sale.ID*1_000_000 + 1 + i%int64(sale.TotalItems)
			if _, st, ec := checkout(b, inst.URL, user, item); st != http.StatusOK && ec != "already_in_cart" && ec != "user_limit_reached" {
				b.Fatalf("checkout: %d %s", st, ec)
			}
		}
	})
}

// BenchmarkPurchase measures purchases of one-item carts end to end.
func BenchmarkPurchase(b *testing.B) {
	inst, sale := benchInstance(b, b.N+1)
	codes := make([]string, b.N)
	for i := range codes {
		r, st, ec := checkout(b, inst.URL, fmt.Sprintf("bench-%d", i), sale.ID*1_000_000+int64(i+1))
		if st != http.StatusOK {
			b.Fatalf("checkout: %d %s", st, ec)
		}
		codes[i] = r.Code
	}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			code := codes[n.Add(1)-1]
			if r, st, ec := purchase(b, inst.URL, code); st != http.StatusOK || r.TotalPurchased != 1 {
				b.Fatalf("purchase: %d %s %+v", st, ec, r)
			}
		}
	})
}

func benchInstance(b *testing.B, items int) (*instance, saleResp) {
	b.Helper()
	e := MustEnv(b, env{"LOG_LEVEL": "error", "DB_MAX_OPEN_CONNS": "32"})
	inst := MustStart(b, e)
	return inst, MustCreateSale(b, inst.URL, min(items, 999_999), time.Hour)
}
