package redis

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/testenv"
)

func mustOpen(t *testing.T, url string) *Client {
	t.Helper()
	c, err := Open(url, Options{PoolSize: 4, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustLimiter(tb testing.TB, c *Client, opts RateLimiterOptions) *RateLimiter {
	l := NewRateLimiter(c, opts)
	tb.Cleanup(l.Close)
	return l
}

// A budget allows its burst, then refuses with the wait until the next
// request; keys are independent and live under the service's prefix, with an
// expiry.
func TestRateLimiterBudget(t *testing.T) {
	url, prefix := testenv.MustRedis(t)
	l := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix})
	ctx := context.Background()
	// 1 a minute: the budget does not refill while the test runs its calls.
	for i := range 3 {
		if wait, err := l.Allow(ctx, "user:a", 1, 3, time.Minute); err != nil || wait != 0 {
			t.Fatalf("call %d: wait %v, err %v; want allowed", i+1, wait, err)
		}
	}
	wait, err := l.Allow(ctx, "user:a", 1, 3, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if wait <= 0 || wait > time.Minute {
		t.Errorf("over the burst: wait %v, want in (0, 1m]", wait)
	}
	if wait, err := l.Allow(ctx, "user:b", 1, 3, time.Minute); err != nil || wait != 0 {
		t.Errorf("another key: wait %v, err %v; want allowed", wait, err)
	}

	rdb := testenv.MustRedisClient(t, url)
	ttl, err := rdb.PTTL(ctx, prefix+":rl:user:a").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 3*time.Minute {
		t.Errorf("%s:rl:user:a expires in %v, want in (0, 3m]: the budget must expire once full", prefix, ttl)
	}
	if n, err := rdb.Exists(ctx, "rate:"+prefix+":rl:user:a").Result(); err != nil || n != 0 {
		t.Errorf("a key outside the prefix exists (%d, %v)", n, err)
	}
}

// Decisions go on when Redis has forgotten the script (a restarted or
// flushed server): the pipelined EVALSHA fails with NOSCRIPT and the library
// runs the script again by EVAL.
func TestRateLimiterAfterScriptFlush(t *testing.T) {
	url, prefix := testenv.MustRedis(t)
	l := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix})
	rdb := testenv.MustRedisClient(t, url)
	ctx := context.Background()
	for i := range 3 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for j := range 20 {
			wg.Go(func() {
				if wait, err := l.Allow(ctx, "k"+strconv.Itoa(j), 1, 1, time.Minute); err != nil || wait != 0 {
					t.Errorf("round %d, key %d after SCRIPT FLUSH: wait %v, err %v; want allowed", i, j, wait, err)
				}
			})
		}
		wg.Wait()
		if wait, err := l.Allow(ctx, "k0", 1, 1, time.Minute); err != nil || wait <= 0 {
			t.Errorf("round %d: over the budget: wait %v, err %v; want refused", i, wait, err)
		}
		if err := rdb.Del(ctx, prefix+":rl:k0").Err(); err != nil {
			t.Fatal(err)
		}
		for j := range 20 {
			rdb.Del(ctx, prefix+":rl:k"+strconv.Itoa(j))
		}
	}
}

// Two clients, as two instances of the service, draw on one budget.
func TestRateLimiterSharedAcrossClients(t *testing.T) {
	url, prefix := testenv.MustRedis(t)
	l1 := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix})
	l2 := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix})
	ctx := context.Background()
	for i, l := range []*RateLimiter{l1, l2} {
		if wait, err := l.Allow(ctx, "addr:192.0.2.1", 1, 2, time.Minute); err != nil || wait != 0 {
			t.Fatalf("limiter %d: wait %v, err %v; want allowed", i+1, wait, err)
		}
	}
	for i, l := range []*RateLimiter{l1, l2} {
		if wait, err := l.Allow(ctx, "addr:192.0.2.1", 1, 2, time.Minute); err != nil || wait <= 0 {
			t.Errorf("limiter %d after the shared burst: wait %v, err %v; want refused", i+1, wait, err)
		}
	}
	// Another prefix is another deployment.
	other := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix + "-other"})
	if wait, err := other.Allow(ctx, "addr:192.0.2.1", 1, 2, time.Minute); err != nil || wait != 0 {
		t.Errorf("other prefix: wait %v, err %v; want allowed", wait, err)
	}
	rdb := testenv.MustRedisClient(t, url)
	t.Cleanup(func() { rdb.Del(context.Background(), prefix+"-other:rl:addr:192.0.2.1") })
}

// With Redis unreachable the limiter answers an error, and then pauses: it
// does not ask Redis again for a second.
func TestRateLimiterRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := mustLimiter(t, mustOpen(t, "redis://"+addr+"/0"), RateLimiterOptions{Prefix: "down"})
	if _, err := l.Allow(context.Background(), "k", 1, 1, time.Second); err == nil || errors.Is(err, ErrRateLimiterPaused) {
		t.Fatalf("first call with Redis down: %v, want a Redis error", err)
	}
	if _, err := l.Allow(context.Background(), "k", 1, 1, time.Second); !errors.Is(err, ErrRateLimiterPaused) {
		t.Errorf("second call: %v, want ErrRateLimiterPaused", err)
	}
}

// A Redis that accepts connections and never answers costs a decision the
// limiter's timeout, not the client's socket timeouts (a second): the call
// ends with the limiter's deadline, although the caller's context has none,
// while the client is still waiting on its socket.
func TestRateLimiterStalledRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c // held open, never answered
		}
	}()
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		for c := range conns {
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
	})
	l := mustLimiter(t, mustOpen(t, "redis://"+ln.Addr().String()+"/0"), RateLimiterOptions{Prefix: "stalled", Timeout: 50 * time.Millisecond})
	if _, err := l.Allow(context.Background(), "k", 1, 1, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled Redis: %v, want the limiter's deadline", err)
	}
	// The client has not given up on its connection: the decision did not
	// wait for the socket's timeout.
	c := <-conns
	held = append(held, c)
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("the client closed its connection before the decision returned (%v): the decision waited for the socket", err)
			}
			break
		}
	}
}

// A caller that leaves does not pause the limiter for everyone else.
func TestRateLimiterCallerCancelDoesNotPause(t *testing.T) {
	url, prefix := testenv.MustRedis(t)
	// A timeout that a loaded machine's first decision (a new connection,
	// the script's load) stays well inside: only the cancel can fail it.
	l := mustLimiter(t, mustOpen(t, url), RateLimiterOptions{Prefix: prefix, Timeout: 900 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Allow(ctx, "k", 1, 1, time.Second); err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	if wait, err := l.Allow(context.Background(), "k", 1, 1, time.Second); err != nil || wait != 0 {
		t.Errorf("after a cancelled call: wait %v, err %v; want allowed", wait, err)
	}
}

// BenchmarkRateLimiterAllow measures one decision against the real Redis:
// "serial" is its latency from one caller, "parallel" its throughput from
// 16 × GOMAXPROCS callers on distinct keys.
func BenchmarkRateLimiterAllow(b *testing.B) {
	url, prefix := testenv.MustRedis(b)
	c, err := Open(url, Options{PoolSize: 64, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	l := mustLimiter(b, c, RateLimiterOptions{Prefix: prefix})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := l.Allow(ctx, "bench:"+strconv.Itoa(i%1000), 1_000_000, 2_000_000, time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Allow(ctx, "bench:"+strconv.FormatInt(n.Add(1)%1000, 10), 1_000_000, 2_000_000, time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
