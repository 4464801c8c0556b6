package redis

import (
	"context"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/flashsale/flashsale/internal/testenv"
)

// The settlement lock is held per sale and kind, under the service's prefix
// with the asked expiry, and its unlock deletes only its own holding.
func TestSettlementLock(t *testing.T) {
	url, prefix := testenv.MustRedis(t)
	l, err := NewSettlementLock(mustOpen(t, url), prefix, metricnoop.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	rdb := testenv.MustRedisClient(t, url)
	ctx := context.Background()
	take := func(sale int64, final bool) (func(context.Context), bool) {
		t.Helper()
		unlock, ok, err := l.LockSettlement(ctx, sale, final, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return unlock, ok
	}

	unlock, ok := take(1, false)
	if !ok {
		t.Fatal("first lock of sale 1 not taken")
	}
	if _, ok := take(1, false); ok {
		t.Error("sale 1's running lock taken twice")
	}
	if _, ok := take(1, true); !ok {
		t.Error("sale 1's final lock not taken beside its running lock")
	}
	if _, ok := take(2, false); !ok {
		t.Error("sale 2's running lock not taken beside sale 1's")
	}
	key := prefix + ":lock:settlement:1:running"
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("%s expires in %v, want within a minute", key, ttl)
	}

	// Expired and taken by another instance: the old unlock leaves it.
	rdb.Del(ctx, key)
	unlock2, ok := take(1, false)
	if !ok {
		t.Fatal("expired lock not taken")
	}
	unlock(ctx)
	if _, ok := take(1, false); ok {
		t.Error("an old holder's unlock released the new holding")
	}
	// The holder's own unlock releases it.
	unlock2(ctx)
	if _, ok := take(1, false); !ok {
		t.Error("lock not taken after its holder's unlock")
	}
}
