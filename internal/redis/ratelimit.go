package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// rateLimitPause is how long the limiter stops asking Redis after a failure.
const rateLimitPause = time.Second

// ErrRateLimiterPaused is the error of a decision not asked of Redis because
// it failed less than a second ago.
var ErrRateLimiterPaused = errors.New("rate limiter paused after a Redis failure")

// RateLimiterOptions configure a RateLimiter.
type RateLimiterOptions struct {
	// Prefix is the service's key prefix; every budget is stored under
	// "<Prefix>:rl:<key>".
	Prefix string
	// Timeout bounds each decision, so
	// that a slow or unreachable Redis costs a request at most this long.
	Timeout time.Duration
	// PipelineMax bounds the decisions of one pipeline, PipelineWriters the
	// pipelines in flight.
	PipelineMax, PipelineWriters int
}

// WithDefaults fills the options left zero: decisions of at most 100ms,
// pipelines of 128 decisions with 2 in flight.
func (o RateLimiterOptions) WithDefaults() RateLimiterOptions {
	o.Timeout = cmp.Or(o.Timeout, 100*time.Millisecond)
	o.PipelineMax = cmp.Or(o.PipelineMax, 128)
	o.PipelineWriters = cmp.Or(o.PipelineWriters, 2)
	return o
}

// RateLimiter keeps request budgets in Redis with the GCRA algorithm of
// github.com/go-redis/redis_rate, so that every instance of the service
// draws on the same budget. Each decision is one script call on the shared,
// instrumented client: it is traced and timed like every Redis command. The
// calls of concurrent requests go out as pipelines, through the pipeliner the
// cache's scripts use: one round trip per batch rather than per request. A
// budget's key expires by itself once the budget is full again.
//
// A decision takes no longer than the timeout: the client's socket deadlines
// are its own (a second), so a pipelined call is waited for up to the timeout
// and then abandoned to finish in the background. (Right after Redis lost its
// scripts, the library's one EVAL to load the script again is waited for up
// to the socket deadline.) After a failure
// the limiter does not ask Redis for a second (ErrRateLimiterPaused), so an
// outage costs one abandoned call per second, not one per request.
type RateLimiter struct {
	lim        *redis_rate.Limiter
	scripts    *limiterScripts
	prefix     string
	timeout    time.Duration
	pauseUntil atomic.Int64 // unix nanoseconds
}

// NewRateLimiter returns a limiter on c's connection pool.
func NewRateLimiter(c *Client, opts RateLimiterOptions) *RateLimiter {
	opts = opts.WithDefaults()
	scripts := &limiterScripts{UniversalClient: c.rdb, pipe: newPipeliner(c.rdb, opts.PipelineMax, opts.PipelineWriters, time.Second)}
	return &RateLimiter{
		lim:     redis_rate.NewLimiter(scripts),
		scripts: scripts,
		prefix:  opts.Prefix + ":rl:",
		timeout: opts.Timeout,
	}
}

// Close sends the decisions still queued and stops the pipeline writers.
func (l *RateLimiter) Close() { l.scripts.pipe.close() }

// Allow takes one request from key's budget: rate requests per period with
// bursts of up to burst. It returns 0 when the request is allowed, else how
// long until the next request of key will be (at least 1ns). An error means
// Redis could not decide within the timeout; the caller chooses what that
// means.
func (l *RateLimiter) Allow(ctx context.Context, key string, rate, burst int, period time.Duration) (retryAfter time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if time.Now().UnixNano() < l.pauseUntil.Load() {
		return 0, ErrRateLimiterPaused
	}
	tctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res, err := l.lim.Allow(tctx, l.prefix+key, redis_rate.Limit{Rate: rate, Burst: burst, Period: period})
	if err != nil {
		if ctx.Err() == nil { // Redis failed, not the caller who left
			l.pauseUntil.Store(time.Now().Add(rateLimitPause).UnixNano())
		}
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Nanosecond), nil
}

// libraryPrefix is the fixed prefix redis_rate puts before every key.
const libraryPrefix = "rate:"

// limiterScripts is the client redis_rate runs its script on. It drops the
// library's fixed "rate:" prefix from the keys, so that the budgets live under
// the service's own prefix (one namespace per deployment and per test, and a
// Redis ACL limited to the prefix covers them), and it sends the EVALSHA
// calls of concurrent decisions as pipelines. A call Redis answers NOSCRIPT
// (a restarted or flushed server) goes back to the library, which runs it
// again by EVAL, pipelined too. Neither is sent twice (see pipeliner): a
// decision is charged once.
type limiterScripts struct {
	redis.UniversalClient
	pipe *pipeliner
}

func stripLibraryPrefix(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, libraryPrefix)
	}
	return out
}

// EvalSha is the library's call of its script: pipelined, and given up
// when ctx ends (the decision's timeout), sent or not.
func (c *limiterScripts) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.pipe.runSha(ctx, sha1, stripLibraryPrefix(keys), args...)
}

// Eval is the library's call of its script after a NOSCRIPT answer,
// pipelined too and never sent twice. Once sent it is waited for, up to the
// pipeline's timeout, whatever ctx says: it loads the script again, for
// every decision after it.
func (c *limiterScripts) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.pipe.runEval(ctx, script, stripLibraryPrefix(keys), args...)
}

func (c *limiterScripts) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalRO(ctx, script, stripLibraryPrefix(keys), args...)
}

func (c *limiterScripts) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalShaRO(ctx, sha1, stripLibraryPrefix(keys), args...)
}

func (c *limiterScripts) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return c.UniversalClient.Del(ctx, stripLibraryPrefix(keys)...)
}
