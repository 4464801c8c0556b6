package reading

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentCallersShareOneRead checks that callers arriving while a
// read is in flight wait for it rather than start their own, and that the
// reading is then answered from memory.
func TestConcurrentCallersShareOneRead(t *testing.T) {
	var reads atomic.Int32
	release := make(chan struct{})
	c := New(func(_ context.Context, key string) (string, error) {
		reads.Add(1)
		<-release
		return "v:" + key, nil
	}, Options{MaxAge: time.Hour})
	const callers = 50
	var wg sync.WaitGroup
	results := make(chan string, callers)
	for range callers {
		wg.Go(func() {
			v, err := c.Get(context.Background(), "k")
			if err != nil {
				t.Error(err)
			}
			results <- v
		})
	}
	// Every caller is waiting on the one read once it has started; the
	// others joined it or will find its reading.
	for reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != "v:k" {
			t.Errorf("got %q", v)
		}
	}
	if _, err := c.Get(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads for %d callers and one more within MaxAge, want 1", n, callers)
	}
}

// TestStaleReadingIsReadAgain checks that a reading older than MaxAge, an
// error included, is read again, and that keys are read apart.
func TestStaleReadingIsReadAgain(t *testing.T) {
	var reads atomic.Int32
	fail := errors.New("down")
	c := New(func(_ context.Context, key string) (int32, error) {
		n := reads.Add(1)
		if key == "bad" {
			return 0, fail
		}
		return n, nil
	}, Options{MaxAge: 10 * time.Millisecond})
	first, _ := c.Get(context.Background(), "k")
	if _, err := c.Get(context.Background(), "bad"); !errors.Is(err, fail) {
		t.Errorf("bad: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // past MaxAge
	second, _ := c.Get(context.Background(), "k")
	if _, err := c.Get(context.Background(), "bad"); !errors.Is(err, fail) {
		t.Errorf("bad: %v", err)
	}
	if first == second || reads.Load() != 4 {
		t.Errorf("readings %d then %d, %d reads: want a new reading after MaxAge", first, second, reads.Load())
	}
}

// TestLeavingCallerDoesNotCancelTheRead checks that a read outlives the
// caller that started it, with the Timeout as its own deadline, and that its
// reading serves the next caller.
func TestLeavingCallerDoesNotCancelTheRead(t *testing.T) {
	release := make(chan struct{})
	var readErr atomic.Value
	c := New(func(ctx context.Context, _ string) (string, error) {
		<-release
		if _, ok := ctx.Deadline(); !ok {
			readErr.Store("no deadline")
		}
		if err := ctx.Err(); err != nil {
			readErr.Store(err.Error())
		}
		return "done", nil
	}, Options{MaxAge: time.Hour, Timeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k")
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the leaving caller got %v", err)
	}
	close(release)
	v, err := c.Get(context.Background(), "k")
	if v != "done" || err != nil {
		t.Errorf("next caller got %q, %v", v, err)
	}
	if e := readErr.Load(); e != nil {
		t.Errorf("the read saw: %v", e)
	}
}

// TestMaxKeys checks that readings past MaxKeys are answered but not kept,
// and that stale readings make room.
func TestMaxKeys(t *testing.T) {
	var reads atomic.Int32
	c := New(func(_ context.Context, key string) (string, error) {
		reads.Add(1)
		return key, nil
	}, Options{MaxAge: time.Hour, MaxKeys: 2})
	for i := range 3 {
		if v, _ := c.Get(context.Background(), strconv.Itoa(i)); v != strconv.Itoa(i) {
			t.Errorf("key %d: %q", i, v)
		}
	}
	c.Get(context.Background(), "0")
	c.Get(context.Background(), "2")
	if n := reads.Load(); n != 4 {
		t.Errorf("%d reads, want 4: keys 0 and 1 kept, key 2 read twice", n)
	}
	if len(c.entries) != 2 {
		t.Errorf("%d readings kept, want 2", len(c.entries))
	}
}

// TestPanickingRead checks that a read that panics is an error for its
// callers, not a crash, and that it is read again next time.
func TestPanickingRead(t *testing.T) {
	var reads atomic.Int32
	c := New(func(context.Context, string) (int, error) {
		if reads.Add(1) == 1 {
			panic("bad read")
		}
		return 7, nil
	}, Options{MaxAge: time.Hour})
	if _, err := c.Get(context.Background(), "k"); err == nil {
		t.Fatal("no error from a panicking read")
	}
	if v, err := c.Get(context.Background(), "k"); v != 7 || err != nil {
		t.Errorf("after the panic: %d, %v", v, err)
	}
}
