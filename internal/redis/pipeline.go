package redis

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/flashsale/flashsale/internal/batch"
)

// pipeliner runs the scripts of concurrent requests as pipelines: each of a
// few writers sends the calls waiting at that moment in one write and reads
// their replies in one read. Under a crowd this turns one round trip (two
// system calls and two wake-ups) per request into one per batch; a lone call
// is sent at once. Each script stays atomic: a pipeline is not a transaction,
// and needs none.
//
// A pipeline that may have reached Redis is never sent again: when its reply
// does not come back (a read timeout, a dropped connection), each of its
// calls fails and the caller answers 503. The scripts are not idempotent —
// an item added to a cart twice, a purchase locked by itself, a rate-limit
// decision charged twice — so the client library's retries are off for them
// whatever the client's options (see sendOnce). A pipeline Redis Cluster
// redirects (MOVED, ASK) did not run there and follows the redirect; a call
// Redis answers NOSCRIPT did not run and is sent again by EVAL.
type pipeliner struct {
	rdb     redis.UniversalClient
	timeout time.Duration
	calls   *batch.Batcher[*scriptCall]
}

// scriptCall is one script run waiting for its pipeline.
type scriptCall struct {
	batch.Queued
	// op and payload are the command: "evalsha" and the script's hash, or
	// "eval" and its source.
	op, payload string
	script      *redis.Script // nil: a NOSCRIPT answer is left to the caller
	keys        []string
	args        []any
	cmd         *redis.Cmd
	done        chan struct{}
}

func newPipeliner(rdb redis.UniversalClient, max, writers int, timeout time.Duration) *pipeliner {
	p := &pipeliner{rdb: rdb, timeout: timeout}
	p.calls = batch.New(max, writers, p.exec)
	return p
}

// run runs script through the next pipeline and returns its reply. When ctx
// ends while the call still waits for a writer (a stalled Redis), it is
// withdrawn unsent and fails at once; once in a pipeline, the call is sent
// whatever happens to ctx: a script that ran must have its reply read by its
// caller.
func (p *pipeliner) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	return p.await(ctx, p.newCall("evalsha", script.Hash(), script, keys, args))
}

// runEval runs the script of source src by EVAL through the next pipeline,
// waited for as run is.
func (p *pipeliner) runEval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	return p.await(ctx, p.newCall("eval", src, nil, keys, args))
}

func (p *pipeliner) await(ctx context.Context, call *scriptCall) *redis.Cmd {
	err := p.calls.Submit(ctx, call)
	if err == nil {
		if _, ok := batch.Await(ctx, call, call.done); ok {
			return call.cmd
		}
		err = ctx.Err()
	}
	return failedCmd(ctx, err)
}

// runSha runs the script of hash sha through the next pipeline, without
// falling back to EVAL (a NOSCRIPT answer is the caller's), for calls whose
// answer may be given up: when ctx ends first, runSha fails at once, and a
// call already sent finishes in the background, its reply dropped.
func (p *pipeliner) runSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	call := p.newCall("evalsha", sha, nil, keys, args)
	err := p.calls.Submit(ctx, call)
	if err == nil {
		select {
		case <-call.done:
			return call.cmd
		case <-ctx.Done():
			call.Withdraw() // unsent if still queued; else its reply is dropped
			err = ctx.Err()
		}
	}
	return failedCmd(ctx, err)
}

func (p *pipeliner) newCall(op, payload string, script *redis.Script, keys []string, args []any) *scriptCall {
	return &scriptCall{op: op, payload: payload, script: script, keys: keys, args: args, done: make(chan struct{})}
}

func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// exec sends one batch by EVALSHA, then again by EVAL the calls whose script
// Redis no longer knows (a restarted or flushed server). The pipeline's span
// is a child of the first call's span.
func (p *pipeliner) exec(calls []*scriptCall) {
	ctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), calls[0].Link().SpanContext), p.timeout)
	defer cancel()
	pipe := p.rdb.Pipeline()
	for _, c := range calls {
		c.cmd = sendOnce(ctx, pipe, c.op, c.payload, c.keys, c.args)
	}
	_, _ = pipe.Exec(ctx) // each command holds its own error
	var retry []*scriptCall
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && c.script != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		pipe = p.rdb.Pipeline()
		for _, c := range retry {
			c.cmd = c.script.Eval(ctx, evalOnce{pipe}, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for _, c := range calls {
		close(c.done)
	}
}

// close sends the queued calls and stops the writers.
func (p *pipeliner) close() { p.calls.Close() }

// sendOnce queues the script command op (EVALSHA or EVAL) of payload on pipe
// so that the client library does not send it again after a failure that
// may have come after Redis ran it. go-redis retries a pipeline on a read
// timeout or a dropped connection up to MaxRetries times (Open turns those
// off) and, on a Redis Cluster, up to MaxRedirects times whatever
// MaxRetries says; a command whose NoRetry is true stops both, while MOVED
// and ASK redirects, after which nothing ran, are still followed.
func sendOnce(ctx context.Context, pipe redis.Pipeliner, op, payload string, keys []string, args []any) *redis.Cmd {
	cmdArgs := make([]any, 0, 3+len(keys)+len(args))
	cmdArgs = append(cmdArgs, op, payload, len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmdArgs = append(cmdArgs, args...)
	cmd := redis.NewCmd(ctx, cmdArgs...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3) // the slot of a cluster is the first key's
	}
	_ = pipe.Process(ctx, noRetryCmd{cmd})
	return cmd
}

// noRetryCmd is a command the client library must not retry. It embeds the
// command, so the library reads the reply into it.
type noRetryCmd struct{ *redis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

// evalOnce is a pipeline whose EVAL is sent once, for redis.Script.Eval,
// which holds the script's source.
type evalOnce struct{ redis.Pipeliner }

func (p evalOnce) Eval(ctx context.Context, src string, keys []string, args ...any) *redis.Cmd {
	return sendOnce(ctx, p.Pipeliner, "eval", src, keys, args)
}
