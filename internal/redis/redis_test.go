package redis

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// replyDelay is longer than the client's read timeout (1 s): a reply this
// late is given up on.
const replyDelay = 1500 * time.Millisecond

// lostReplies are the ways a command reaches Redis, runs, and its reply
// does not reach the client.
var lostReplies = []struct {
	name string
	lose func(*testenv.Proxy)
}{
	{"reply after the read timeout", func(p *testenv.Proxy) { p.DelayNextReply(replyDelay) }},
	{"connection lost before the reply", func(p *testenv.Proxy) { p.DropNextReply() }},
}

// delayedRedis returns the URL of a proxy in front of the test Redis, the
// proxy, the Redis URL and the test's key prefix.
func delayedRedis(t *testing.T) (proxyURL string, proxy *testenv.Proxy, directURL, prefix string) {
	t.Helper()
	redisURL, prefix := testenv.MustRedis(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProxy(t, u.Host)
	u.Host = p.Addr()
	return u.String(), p, redisURL, prefix
}

// settle waits until key holds at least want, then for as long as a reply
// is delayed, so that a run sent again after it has landed too, and returns
// the key's value.
func settle(t *testing.T, rdb *redis.Client, key string, want int64) int64 {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n, _ := rdb.Get(ctx, key).Int64(); n >= want {
			break
		}
	}
	time.Sleep(replyDelay)
	n, _ := rdb.Get(ctx, key).Int64()
	return n
}

// A script that ran but whose reply was lost (late past the read timeout,
// or its connection dropped) is not sent again: the caller gets an error
// (the API's 503). The cart scripts, the purchase lock and the rate
// limiter's GCRA are not idempotent.
func TestLostReplyRunsScriptOnce(t *testing.T) {
	for _, lr := range lostReplies {
		t.Run(lr.name, func(t *testing.T) {
			proxyURL, proxy, directURL, prefix := delayedRedis(t)
			rdb := testenv.MustRedisClient(t, directURL)
			c := mustOpen(t, proxyURL)
			p := newPipeliner(c.rdb, 16, 2, 3*time.Second)
			defer p.close()
			incr := redis.NewScript(`return redis.call('INCR', KEYS[1])`)
			key := prefix + ":runs"
			ctx := context.Background()
			if n, err := p.run(ctx, incr, []string{key}).Int64(); err != nil || n != 1 {
				t.Fatalf("first run: %d, %v", n, err)
			}

			lr.lose(proxy)
			err := p.run(ctx, incr, []string{key}).Err()
			n := settle(t, rdb, key, 2)
			if n != 2 {
				t.Errorf("the script ran %d times for one call whose reply was lost, want 1", n-1)
			}
			if err == nil {
				t.Error("the call succeeded: it was sent again, or a late reply was waited for")
			} else if code := flashsale.ErrorCode(unavailable(err)); code != flashsale.EUnavailable {
				t.Errorf("error %v is %q, want %q (503)", err, code, flashsale.EUnavailable)
			}
			if m, err := p.run(ctx, incr, []string{key}).Int64(); err != nil || m != n+1 {
				t.Errorf("next call: %d, %v; want %d", m, err, n+1)
			}
		})
	}
}

// The same for the rate limiter's decision, whose GCRA script spends the
// budget each time it runs: a decision whose reply was lost is charged once.
func TestLostReplyChargesRateLimitOnce(t *testing.T) {
	for _, lr := range lostReplies {
		t.Run(lr.name, func(t *testing.T) {
			proxyURL, proxy, directURL, prefix := delayedRedis(t)
			rdb := testenv.MustRedisClient(t, directURL)
			// Decisions give up before the client's read timeout (1 s), as
			// the default's 100 ms do, with room for the first decision's
			// connection on a loaded machine.
			l := mustLimiter(t, mustOpen(t, proxyURL), RateLimiterOptions{Prefix: prefix, Timeout: 900 * time.Millisecond})
			ctx := context.Background()
			// A burst of 3 per hour: the budget does not refill during the test.
			const rate, burst = 1, 3
			if wait, err := l.Allow(ctx, "user:a", rate, burst, time.Hour); err != nil || wait != 0 {
				t.Fatalf("first decision: wait %v, %v", wait, err)
			}
			key := prefix + ":rl:user:a"
			before, err := rdb.Get(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}

			lr.lose(proxy)
			if _, err := l.Allow(ctx, "user:a", rate, burst, time.Hour); err == nil {
				t.Error("a decision whose reply was lost was taken")
			}
			// The decision's caller gave up; its pipeline finishes in the
			// background, where a second run would spend a second token.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if v, _ := rdb.Get(ctx, key).Result(); v != before {
					break
				}
			}
			time.Sleep(replyDelay)
			// The budget, read by a limiter of its own on a direct connection.
			direct := mustLimiter(t, mustOpen(t, directURL), RateLimiterOptions{Prefix: prefix, Timeout: 10 * time.Second})
			wait, err := direct.Allow(ctx, "user:a", rate, burst, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if wait != 0 {
				t.Errorf("the budget of 3 is spent after 2 decisions, one of them lost: that one was charged twice (wait %v)", wait)
			}
		})
	}
}

// A REDIS_URL that asks the client library to retry commands is refused:
// the retried command may have run.
func TestOpenRefusesRetries(t *testing.T) {
	opts := Options{MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()}
	for _, u := range []string{
		"redis://127.0.0.1:6379/0?max_retries=2",
		"redis://127.0.0.1:6379?addr=127.0.0.1:6380&max_retries=1",
		"redis://127.0.0.1:26379/0?master_name=m&max_retries=3",
	} {
		if _, err := Open(u, opts); err == nil || !strings.Contains(err.Error(), "max_retries") {
			t.Errorf("Open(%q): %v, want max_retries refused", u, err)
		}
	}
	for _, u := range []string{"redis://127.0.0.1:6379/0?max_retries=-1", "redis://127.0.0.1:6379/0"} {
		c, err := Open(u, opts)
		if err != nil {
			t.Errorf("Open(%q): %v", u, err)
			continue
		}
		if n := c.Redis().(*redis.Client).Options().MaxRetries; n != 0 {
			t.Errorf("Open(%q): the client retries a failed command %d times, want 0", u, n)
		}
		c.Close()
	}
}

// On a Redis Cluster, the client library sends a pipeline again after a
// lost reply up to MaxRedirects times, whatever MaxRetries says: the
// pipeliner's scripts are sent once there too. The slot's master is
// reached through the proxy.
func TestLostReplyRunsScriptOnceOnCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t, 3, 0)
	ctx := context.Background()
	key := "{runs}:n"
	master, err := rc.MasterOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, master.Addr())
	opts := Options{PoolSize: 4, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(),
		dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == master.Addr() {
				addr = proxy.Addr()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	c, err := Open(rc.URL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := newPipeliner(c.rdb, 16, 2, 3*time.Second)
	defer p.close()
	rdb := testenv.MustRedisClient(t, "redis://"+master.Addr())
	incr := redis.NewScript(`return redis.call('INCR', KEYS[1])`)
	for _, lr := range lostReplies {
		before, _ := rdb.Get(ctx, key).Int64()
		if n, err := p.run(ctx, incr, []string{key}).Int64(); err != nil || n != before+1 {
			t.Fatalf("%s: run before: %d, %v; want %d", lr.name, n, err, before+1)
		}
		lr.lose(proxy)
		err := p.run(ctx, incr, []string{key}).Err()
		if n := settle(t, rdb, key, before+2); n != before+2 {
			t.Errorf("%s: the script ran %d times for one call whose reply was lost, want 1", lr.name, n-before-1)
		}
		if err == nil {
			t.Errorf("%s: the call succeeded: it was sent again, or a late reply was waited for", lr.name)
		}
	}
}
