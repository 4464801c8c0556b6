package batch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

type groupReq struct {
	Answer[string]
	name string
}

var errOutage = errors.New("outage")

// newTestGroup returns a group of one writer whose commit fails every batch
// of more than one request with err, and answers lone requests with their
// name. The writer waits for release before its first batch.
func newTestGroup(err error, release <-chan struct{}) (*Group[*groupReq, string], *[][]string) {
	var mu sync.Mutex
	var commits [][]string
	first := true
	commit := func(ctx context.Context, reqs []*groupReq) ([]string, error) {
		if first {
			<-release
			first = false
		}
		mu.Lock()
		var names []string
		for _, r := range reqs {
			names = append(names, r.name)
		}
		commits = append(commits, names)
		mu.Unlock()
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("commit without a deadline")
		}
		if len(reqs) > 1 || reqs[0].name == "bad" {
			return nil, err
		}
		return names, nil
	}
	g := NewGroup(GroupOptions{
		Name: "test", MaxBatch: 8, Writers: 1, Timeout: time.Second,
		Tracer: tracenoop.NewTracerProvider().Tracer(""), Logger: slog.New(slog.DiscardHandler),
		Outage: func(err error) bool { return errors.Is(err, errOutage) },
	}, commit, func(err error) string { return "failed: " + err.Error() })
	return g, &commits
}

// doAll runs the requests of names concurrently once the first holds the
// writer, and returns their answers.
func doAll(t *testing.T, g *Group[*groupReq, string], release chan struct{}, names ...string) map[string]string {
	t.Helper()
	var mu sync.Mutex
	answers := map[string]string{}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			a, err := g.Do(context.Background(), &groupReq{name: name})
			if err != nil {
				t.Errorf("Do(%s): %v", name, err)
			}
			mu.Lock()
			answers[name] = a
			mu.Unlock()
		})
		if i == 0 {
			time.Sleep(20 * time.Millisecond) // the first is taken alone
		}
	}
	time.Sleep(20 * time.Millisecond) // the others queue up
	close(release)
	wg.Wait()
	return answers
}

// TestGroupCommitsOneByOneAfterABug checks that a batch rejected for a
// reason other than an outage is committed request by request, so that one
// bad request fails alone.
func TestGroupCommitsOneByOneAfterABug(t *testing.T) {
	release := make(chan struct{})
	g, commits := newTestGroup(errors.New("bug"), release)
	answers := doAll(t, g, release, "first", "a", "bad", "b")
	g.Close()
	want := map[string]string{"first": "first", "a": "a", "b": "b", "bad": "failed: bug"}
	for name, w := range want {
		if answers[name] != w {
			t.Errorf("answer of %s = %q, want %q", name, answers[name], w)
		}
	}
	if n := len(*commits); n != 5 { // first; a, bad, b together; then each alone
		t.Errorf("%d commits (%v), want 5", n, *commits)
	}
}

// TestGroupFailsABatchAfterAnOutage checks that a batch that met an outage
// fails whole, without a commit per request.
func TestGroupFailsABatchAfterAnOutage(t *testing.T) {
	release := make(chan struct{})
	g, commits := newTestGroup(errOutage, release)
	answers := doAll(t, g, release, "first", "a", "b")
	g.Close()
	if answers["first"] != "first" || answers["a"] != "failed: outage" || answers["b"] != "failed: outage" {
		t.Errorf("answers = %v", answers)
	}
	if n := len(*commits); n != 2 {
		t.Errorf("%d commits (%v), want 2", n, *commits)
	}
}

// TestGroupDoAfterClose checks that a closed group refuses requests.
func TestGroupDoAfterClose(t *testing.T) {
	g, _ := newTestGroup(errOutage, nil)
	g.Close()
	if _, err := g.Do(context.Background(), &groupReq{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close = %v, want ErrClosed", err)
	}
}
