package main

import (
	"context"
	"errors"
	"sync/atomic"
)

// readiness reports whether start-up (migrations, current sale) is done.
type readiness struct{ err atomic.Pointer[error] }

func newReadiness() *readiness {
	r := &readiness{}
	r.set(errors.New("starting: migrations and sales not ready"))
	return r
}

func (r *readiness) set(err error) { r.err.Store(&err) }

func (r *readiness) check(context.Context) error { return *r.err.Load() }
