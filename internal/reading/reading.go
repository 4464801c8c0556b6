// Package reading shares the reads of a dependency among their callers: a
// value read less than MaxAge ago is answered from memory, and concurrent
// callers of a stale one wait for a single read (golang.org/x/sync's
// singleflight). Whatever the request rate, a key then costs the dependency
// at most one read in flight and about one per MaxAge.
package reading

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Options configure a Cache.
type Options struct {
	// MaxAge is how long a reading is answered from memory, counted from
	// the start of the read that took it.
	MaxAge time.Duration
	// Timeout bounds each read. A read is not tied to
	// the caller that started it: a caller that leaves does not cancel it
	// for the others, and its result is kept for the next callers.
	Timeout time.Duration
	// MaxKeys bounds the readings kept; past it, a new
	// key's reading is shared by the callers waiting for it but not kept.
	MaxKeys int
}

// WithDefaults fills the options left zero: readings of at most a second,
// reads of at most a second, 1024 keys.
func (o Options) WithDefaults() Options {
	o.MaxAge = cmp.Or(o.MaxAge, time.Second)
	o.Timeout = cmp.Or(o.Timeout, time.Second)
	o.MaxKeys = cmp.Or(o.MaxKeys, 1024)
	return o
}

// Cache holds readings by key. Errors are readings too: a failing
// dependency is asked again after MaxAge, not by every caller.
type Cache[V any] struct {
	read    func(ctx context.Context, key string) (V, error)
	maxAge  time.Duration
	timeout time.Duration
	maxKeys int
	flights singleflight.Group

	mu      sync.Mutex
	entries map[string]entry[V]
}

type entry[V any] struct {
	val V
	err error
	at  time.Time // when the read started
}

// New returns a Cache whose readings read takes.
func New[V any](read func(ctx context.Context, key string) (V, error), opts Options) *Cache[V] {
	opts = opts.WithDefaults()
	return &Cache[V]{read: read, maxAge: opts.MaxAge, timeout: opts.Timeout, maxKeys: opts.MaxKeys, entries: make(map[string]entry[V])}
}

// Get returns key's reading: from memory when it is younger than MaxAge,
// else from the read in flight for key, started by this call if there is
// none. It returns ctx's error when ctx ends first.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	if e, ok := c.fresh(key); ok {
		return e.val, e.err
	}
	ch := c.flights.DoChan(key, func() (_ any, err error) {
		// A read that ended between the look-up above and this flight
		// has left a fresh reading.
		if e, ok := c.fresh(key); ok {
			return e.val, e.err
		}
		// singleflight re-panics a DoChan panic where no one can recover
		// it: the callers get an error instead, and nothing is kept.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("reading %q panicked: %v", key, p)
			}
		}()
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		v, err := c.read(rctx, key)
		c.keep(key, entry[V]{val: v, err: err, at: start})
		return v, err
	})
	select {
	case r := <-ch:
		v, _ := r.Val.(V) // a nil interface value asserts to nothing
		return v, r.Err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// fresh returns key's reading if it is younger than MaxAge.
func (c *Cache[V]) fresh(key string) (entry[V], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok && time.Since(e.at) < c.maxAge
}

// keep stores a reading, making room by dropping the stale ones when the
// cache is full.
func (c *Cache[V]) keep(key string, e entry[V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.maxKeys {
		for k, old := range c.entries {
			if time.Since(old.at) >= c.maxAge {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.maxKeys {
			return
		}
	}
	c.entries[key] = e
}
