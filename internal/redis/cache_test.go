package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// TestCheckoutBudgetDecidesAsRateLimiter: the user's checkout budget, taken
// in the checkout's own script, decides as RateLimiter (redis_rate's GCRA)
// does with the same budget, call for call: the burst passes, the next
// checkouts are refused with the same wait, and once that wait has passed
// both let one through again. The budget's key is the sale's, and expires
// once the budget is full again.
//
// On a Redis Cluster the budget's key shares the sale's slot, so the script
// runs there as it does on one server.
func TestCheckoutBudgetDecidesAsRateLimiter(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		url, prefix := testenv.MustRedis(t)
		checkoutBudgetAsRateLimiter(t, url, prefix)
	})
	t.Run("cluster", func(t *testing.T) {
		checkoutBudgetAsRateLimiter(t, testenv.StartRedisCluster(t, 3, 0).URL(), "budget")
	})
}

func checkoutBudgetAsRateLimiter(t *testing.T, url, prefix string) {
	c := mustOpen(t, url)
	rdb := c.rdb
	ctx := context.Background()
	lim := mustLimiter(t, c, RateLimiterOptions{Prefix: prefix, Timeout: 900 * time.Millisecond})
	for n, b := range []Budget{
		{Rate: 1, Burst: 3, Period: time.Hour},
		{Rate: 5, Burst: 2}, // a second: 200 ms between checkouts
	} {
		t.Run(fmt.Sprintf("%d per %s, burst %d", b.Rate, b.Period, b.Burst), func(t *testing.T) {
			period := cmp.Or(b.Period, time.Second) // a zero Period is a second, for both
			cache, err := NewCache(c, CacheOptions{Prefix: prefix, UserCheckouts: b, MeterProvider: metricnoop.NewMeterProvider()})
			if err != nil {
				t.Fatal(err)
			}
			defer cache.Close()
			start := time.Now().Truncate(time.Second).Add(time.Duration(n) * time.Second)
			sale := &flashsale.Sale{ID: start.Unix(), StartedAt: start, EndedAt: start.Add(time.Hour), TotalItems: 100, UserItemLimit: 10}
			if err := cache.Load(ctx, sale, &flashsale.SaleState{Bought: map[string]int{}, Open: map[string]string{}, Codes: map[string]string{}}); err != nil {
				t.Fatal(err)
			}
			user := fmt.Sprintf("alice%d", n)
			decide := func(i int) (cacheWait, limiterWait time.Duration) {
				t.Helper()
				_, err := cache.CheckCheckout(ctx, sale, user, i, flashsale.NewCode(sale.ID))
				var ra flashsale.RetryAfter
				switch {
				case err == nil:
				case flashsale.ErrorCode(err) == flashsale.ERateLimited && errors.As(err, &ra):
					cacheWait = time.Duration(ra)
				default:
					t.Fatalf("checkout %d: %v", i, err)
				}
				w, err := lim.Allow(ctx, user, b.Rate, b.Burst, period)
				if err != nil {
					t.Fatal(err)
				}
				return cacheWait, w
			}
			for i := 1; i <= b.Burst+2; i++ {
				cw, lw := decide(i)
				if (cw > 0) != (lw > 0) || (i <= b.Burst) != (cw == 0) {
					t.Fatalf("checkout %d: the cache waits %v, the limiter %v; want the burst of %d to pass", i, cw, lw, b.Burst)
				}
				if d := cw - lw; d < -100*time.Millisecond || d > 100*time.Millisecond {
					t.Errorf("checkout %d: the cache waits %v, the limiter %v", i, cw, lw)
				}
			}
			key := cache.keys(sale.ID).base + "budget:checkout:" + user
			if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Duration(b.Burst+1)*period/time.Duration(b.Rate)+time.Second {
				t.Errorf("the budget's key %s expires in %v", key, ttl)
			}
			if b.Period >= time.Minute {
				return
			}
			cw, _ := decide(100)
			time.Sleep(cw + 50*time.Millisecond)
			if cw, lw := decide(101); cw != 0 || lw != 0 {
				t.Errorf("after the wait: the cache waits %v, the limiter %v; want both to pass", cw, lw)
			}
		})
	}
}
