package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Why the load ended, as the report's ended_by says.
var (
	errDurationElapsed = errors.New("duration")
	errSoldOut         = errors.New("sold_out")
	errSaleEnded       = errors.New("sale_ended")
	errNoItems         = errors.New("no_items_left")
)

// loadRun is the state a profile works with.
type loadRun struct {
	cfg   Config
	runID string // prefix of this run's user ids, so that runs never share a user
	c     *Client
	sale  Sale
	pool  *ItemPool
	rec   *recorder

	// ctx carries the requests: it ends only when the run is interrupted, so
	// requests in flight at the deadline finish and are measured.
	ctx context.Context
	// stop ends at the deadline, at sell-out or on interruption: no request
	// starts after it. endLoad ends it with the cause the report shows.
	stop    context.Context
	endLoad context.CancelCauseFunc

	watch  *saleWatch // reads the sale's progress; nil when the profile buys nothing
	ledger *Ledger    // what purchases answered
	// crowd is a test's flash crowd, zero for a run: what it steers, and a
	// ledger told every checkout's answer too (checked in PostgreSQL).
	crowd Crowd
	// soldOutAt is when a purchase of this run sold the last item left.
	soldOutAt atomic.Pointer[time.Time]
	open      *OpenLoopReport // open profile only
}

// stopped reports whether the load is over.
func (lr *loadRun) stopped() bool { return lr.stop.Err() != nil }

// userID names user n of a kind ("f" flash, "s" steady, ...) in this run.
func (lr *loadRun) userID(kind string, n int64) string {
	return lr.runID + "-" + kind + strconv.FormatInt(n, 10)
}

// rng returns the random source of worker n, derived from -seed so that a
// run's choices can be repeated.
func (lr *loadRun) rng(n int64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(lr.cfg.Seed, uint64(n)))
}

// pause waits d unless the load stops first, and reports whether it did not.
func (lr *loadRun) pause(d time.Duration) bool { return d <= 0 || sleepCtx(lr.stop, d) }

// itemSold takes a sold item out of the pool and, when it was the last
// one, ends a load that runs until the sale sells out: the service's own
// count (GET /sales/{id}) may be a second behind.
func (lr *loadRun) itemSold(id int64) {
	if lr.pool.Remove(id) == 0 && lr.soldOutAt.CompareAndSwap(nil, new(time.Now())) && lr.watch != nil {
		lr.endLoad(errSoldOut)
	}
	if lr.crowd.Sold != nil {
		lr.crowd.Sold()
	}
}

// lastSold returns when this run's purchases sold the last item the sale
// had left at its start, zero when they did not.
func (lr *loadRun) lastSold() time.Time {
	if at := lr.soldOutAt.Load(); at != nil {
		return *at
	}
	return time.Time{}
}

// Run runs the configured profile against the target and returns what it
// measured. Progress lines go to stderr. The run was interrupted when ctx
// ends: the load stops and the report still comes.
func Run(ctx context.Context, cfg Config, stderr io.Writer) (*Report, error) {
	api := NewFastClient(cfg.conns(), cfg.MaxConns, cfg.Timeout, cfg.Targets...)
	defer api.CloseIdleConnections()
	// Discovery and the sale's creation go to the first target.
	c := *api
	c.targets, c.adminToken = cfg.Targets[:1], cfg.AdminToken

	s, created, err := findSale(ctx, cfg, &c)
	if err != nil {
		return nil, err
	}
	pool, err := discoverItems(ctx, &c, s)
	if err != nil {
		return nil, err
	}
	if pool.Len() == 0 {
		return nil, fmt.Errorf("sale %d has no unsold items", s.ID)
	}

	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}
	lr := &loadRun{cfg: cfg, runID: newRunID(), sale: s, pool: pool, ledger: NewLedger(s.TotalItems)}
	start := time.Now()
	lr.rec = newRecorder(start)
	lr.c = api.Observed(lr.rec.record)
	lr.ctx = ctx
	lr.stop, lr.endLoad = context.WithCancelCause(ctx)
	timer := time.AfterFunc(cfg.Duration, func() { lr.endLoad(errDurationElapsed) })
	defer timer.Stop()

	var bg sync.WaitGroup
	if cfg.Profile == ProfileFlash || cfg.Profile == ProfileRealistic {
		lr.watch = newSaleWatch(lr.c, s, lr.rec)
		bg.Go(func() { lr.watch.run(ctx, lr.stop, func() { lr.endLoad(errSoldOut) }) })
	}
	if cfg.Progress || isTerminal(stderr) {
		bg.Go(func() { progress(lr.stop, stderr, isTerminal(stderr), lr) })
	}

	switch cfg.Profile {
	case ProfileFlash:
		runFlash(lr)
	case ProfileSteady:
		runSteady(lr)
	case ProfileRealistic:
		runRealistic(lr)
	case ProfileOpen:
		runOpen(lr)
	}
	elapsed := time.Since(start)
	// Every user may have finished before the watcher saw the last sale:
	// one more look tells whether the sale sold out.
	if lr.watch != nil && !lr.stopped() && (!lr.lastSold().IsZero() || lr.watch.check(ctx)) {
		lr.endLoad(errSoldOut)
	}
	lr.endLoad(nil) // the profile ran out of users
	bg.Wait()

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return lr.report(rctx, created, elapsed), nil
}

// endedBy names why the load stopped.
func (lr *loadRun) endedBy() string {
	switch cause := context.Cause(lr.stop); {
	case cause == nil, errors.Is(cause, context.Canceled) && lr.ctx.Err() == nil:
		return "users_done"
	case errors.Is(cause, context.Canceled):
		return "interrupted"
	default:
		return cause.Error()
	}
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "lg" + hex.EncodeToString(b)
}

// isTerminal reports whether w is a terminal, where a progress line that
// rewrites itself makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// saleWatch reads the sale's items_sold a few times a second: the progress,
// the sold-over-time chart and the moment of sell-out come from the
// service's own count.
type saleWatch struct {
	c       *Client
	sale    Sale
	rec     *recorder
	pokes   chan struct{}
	mu      sync.Mutex
	sold    int
	soldOut time.Time // zero until observed
}

// watchInterval bounds the error of the time to sell out.
const watchInterval = 100 * time.Millisecond

func newSaleWatch(c *Client, s Sale, rec *recorder) *saleWatch {
	return &saleWatch{c: c, sale: s, rec: rec, pokes: make(chan struct{}, 1), sold: s.ItemsSold}
}

// poke asks for a reading now.
func (w *saleWatch) poke() {
	select {
	case w.pokes <- struct{}{}:
	default:
	}
}

// run reads the sale until stop ends or the sale sells out, which it
// reports through soldOut.
func (w *saleWatch) run(ctx, stop context.Context, soldOut func()) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-stop.Done():
			return
		case <-t.C:
		case <-w.pokes:
		}
		if w.check(ctx) {
			soldOut()
			return
		}
	}
}

// check reads the sale once and reports whether it is sold out.
func (w *saleWatch) check(ctx context.Context) bool {
	s, res := w.c.Sale(ctx, w.sale.ID)
	if !res.OK() {
		return false
	}
	now := time.Now()
	w.rec.observeSold(now, s.ItemsSold)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sold = s.ItemsSold
	if s.ItemsSold >= s.TotalItems && w.soldOut.IsZero() {
		w.soldOut = now
	}
	return !w.soldOut.IsZero()
}

// state returns the items sold last read and when sell-out was observed.
func (w *saleWatch) state() (sold int, soldOut time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sold, w.soldOut
}

// startCPUProfile profiles the generator into file until the returned
// function is called.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
