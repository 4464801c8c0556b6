package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type req struct {
	Queued
	n    int
	done chan int // the size of the batch that carried it
}

// TestBatchesGather checks that requests arriving while a batch is handled
// ride together in the next ones, that no batch exceeds max, and that every
// request is answered exactly once.
func TestBatchesGather(t *testing.T) {
	const max, n = 8, 200
	release := make(chan struct{})
	var batches, handled atomic.Int64
	b := New(max, 1, func(batch []*req) {
		if batches.Add(1) == 1 {
			<-release // hold the writer so the others queue up
		}
		if len(batch) > max {
			t.Errorf("batch of %d > max %d", len(batch), max)
		}
		for _, r := range batch {
			handled.Add(1)
			r.done <- len(batch)
		}
	})
	var wg sync.WaitGroup
	sizes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			r := &req{n: i, done: make(chan int, 1)}
			if err := b.Submit(context.Background(), r); err != nil {
				t.Error(err)
				return
			}
			sizes[i] = <-r.done
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	b.Close()
	if handled.Load() != n {
		t.Errorf("handled %d requests, want %d", handled.Load(), n)
	}
	if batches.Load() >= n/2 {
		t.Errorf("%d batches for %d requests: requests did not gather", batches.Load(), n)
	}
}

// TestSubmitAfterClose checks that a closed batcher refuses requests as
// with ErrClosed, and that Close handles what was queued.
func TestSubmitAfterClose(t *testing.T) {
	var handled atomic.Int64
	b := New(4, 2, func(batch []*req) { handled.Add(int64(len(batch))) })
	for range 3 {
		if err := b.Submit(context.Background(), &req{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	b.Close() // idempotent
	if handled.Load() != 3 {
		t.Errorf("Close left %d of 3 queued requests unhandled", 3-handled.Load())
	}
	if err := b.Submit(context.Background(), &req{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close = %v, want ErrClosed", err)
	}
}

// TestSubmitGivesUpWithContext checks that a full queue does not hold a
// request past its context.
func TestSubmitGivesUpWithContext(t *testing.T) {
	block := make(chan struct{})
	b := New(1, 1, func([]*req) { <-block })
	defer func() { close(block); b.Close() }()
	_ = b.Submit(context.Background(), &req{}) // taken by the writer, which blocks
	_ = b.Submit(context.Background(), &req{}) // fills the queue
	time.Sleep(10 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Submit(ctx, &req{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Submit on a full queue = %v, want ctx's error once it ends", err)
	}
}

// TestAwaitWithdraws checks that a request whose caller gives up while it is
// still queued behind a stalled batch is answered at once and never handled,
// while the request already in the stalled batch is waited for.
func TestAwaitWithdraws(t *testing.T) {
	block := make(chan struct{})
	var handled []int
	var mu sync.Mutex
	b := New(4, 1, func(batch []*req) {
		<-block
		mu.Lock()
		defer mu.Unlock()
		for _, r := range batch {
			handled = append(handled, r.n)
			r.done <- len(batch)
		}
	})
	taken := &req{n: 1, done: make(chan int, 1)}
	if err := b.Submit(context.Background(), taken); err != nil {
		t.Fatal(err)
	}
	for taken.state.Load() == 0 { // the writer takes it, then blocks
		time.Sleep(time.Millisecond)
	}

	queued := &req{n: 2, done: make(chan int, 1)}
	if err := b.Submit(context.Background(), queued); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := Await(ctx, queued, queued.done); ok {
		t.Fatal("Await of a queued request with an ended context = ok, want withdrawn")
	}

	// The taken request is waited for even though its context ends.
	got := make(chan bool)
	go func() {
		_, ok := Await(ctx, taken, taken.done)
		got <- ok
	}()
	select {
	case <-got:
		t.Fatal("Await returned before the batch carrying its request was handled")
	case <-time.After(20 * time.Millisecond):
	}
	close(block)
	if !<-got {
		t.Error("Await of a taken request = withdrawn, want its answer")
	}
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 1 || handled[0] != 1 {
		t.Errorf("handled %v, want only the taken request [1]", handled)
	}
}
