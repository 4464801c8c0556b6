package invariants

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// SettlementLocker takes the deployment-wide lock that lets one instance
// prove a sale per period. internal/redis implements it with SET NX PX.
type SettlementLocker interface {
	// LockSettlement takes the lock of sale saleID's running proofs (or, with
	// final, of its final proof) for ttl. It returns ok=false while another
	// instance holds it, and an error when it cannot tell. unlock releases
	// the lock before its ttl.
	LockSettlement(ctx context.Context, saleID int64, final bool, ttl time.Duration) (unlock func(context.Context), ok bool, err error)
}

// SettlerOptions configure a Settler. Zero values take the defaults (see
// WithDefaults).
type SettlerOptions struct {
	// Interval is how often the running sale is proven.
	Interval time.Duration
	// FinalDelay is how long after a sale's end its final proof waits, so
	// purchases in flight at the end have committed.
	FinalDelay time.Duration
	// Hold is how long a proof's findings stay exported (at least 3
	// intervals): long enough that a final proof's violations
	// outlive the sale's end, short enough that an instance that no longer
	// proves does not export an old answer for ever.
	Hold time.Duration
	// Locker makes one instance of the deployment prove each sale per
	// period; nil (no Redis) lets every instance prove.
	Locker        SettlementLocker
	MeterProvider metric.MeterProvider
	Logger        *slog.Logger
}

// WithDefaults fills the options left zero: a proof a minute, the final
// proof 30s after the end, findings held an hour (at least 3 intervals),
// the global meter provider, no log.
func (o SettlerOptions) WithDefaults() SettlerOptions {
	o.Interval = cmp.Or(o.Interval, time.Minute)
	o.FinalDelay = cmp.Or(o.FinalDelay, 30*time.Second)
	o.Hold = max(cmp.Or(o.Hold, time.Hour), 3*o.Interval)
	o.MeterProvider = cmp.Or(o.MeterProvider, otel.GetMeterProvider())
	o.Logger = cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	return o
}

// proofTimeout bounds one Settle: a database that stalls delays the next
// proof, it does not pile proofs up.
const proofTimeout = 30 * time.Second

// finalLockTTL is how long the lock of a sale's final proof is kept: the
// final proof happens once per deployment for that long.
const finalLockTTL = 24 * time.Hour

// Settler is the settlement proof of the service: while a sale runs (every
// Interval) and once after it ends, one instance runs Check on it and exports
// the result as sale_settlement_violations{check}, logging each broken
// guarantee at ERROR.
type Settler struct {
	db   *sql.DB
	opts SettlerOptions
	log  *slog.Logger

	duration metric.Float64Histogram
	reg      metric.Registration
	attrs    map[string]metric.ObserveOption // check name -> its attribute set

	mu        sync.Mutex
	results   map[int64]proof // sale id -> this instance's latest proof of it
	lastProof time.Time       // zero until the first proof
	// lastFinal is the last sale whose final proof this instance made or
	// saw locked by another, so it asks for each final lock once.
	lastFinal int64
}

// proof is what one proof of a sale found, and when.
type proof struct {
	at     time.Time
	checks map[string]int
}

// NewSettler returns a Settler over db and registers its instruments:
// sale_settlement_violations{check}, sale_settlement_last_proof_timestamp_seconds
// and sale_settlement_duration_seconds.
func NewSettler(db *sql.DB, opts SettlerOptions) (*Settler, error) {
	opts = opts.WithDefaults()
	s := &Settler{db: db, opts: opts, log: opts.Logger, results: map[int64]proof{}, attrs: map[string]metric.ObserveOption{}}
	for _, name := range CheckNames() {
		s.attrs[name] = metric.WithAttributeSet(attribute.NewSet(attribute.String("check", name)))
	}
	m := opts.MeterProvider.Meter(meterName)
	violations, err := m.Int64ObservableGauge("sale_settlement_violations",
		metric.WithDescription("Breaches of each sale guarantee found by this instance's settlement proofs still held (0: the guarantee holds); absent until this instance proves a sale"))
	if err != nil {
		return nil, fmt.Errorf("sale_settlement_violations: %w", err)
	}
	last, err := m.Float64ObservableGauge("sale_settlement_last_proof_timestamp_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Unix time of this instance's latest completed settlement proof (0: none yet)"))
	if err != nil {
		return nil, fmt.Errorf("sale_settlement_last_proof_timestamp_seconds: %w", err)
	}
	if s.duration, err = m.Float64Histogram("sale_settlement_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of settlement proofs in seconds"),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, fmt.Errorf("sale_settlement_duration_seconds: %w", err)
	}
	s.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		held, at := s.held(time.Now())
		for name, n := range held {
			o.ObserveInt64(violations, int64(n), s.attrs[name])
		}
		ts := 0.0
		if !at.IsZero() {
			ts = float64(at.UnixNano()) / 1e9
		}
		o.ObserveFloat64(last, ts)
		return nil
	}, violations, last)
	if err != nil {
		return nil, fmt.Errorf("settlement gauges: %w", err)
	}
	return s, nil
}

const meterName = "github.com/flashsale/flashsale/internal/invariants"

// Close unregisters the settlement gauges.
func (s *Settler) Close() error { return s.reg.Unregister() }

// held sums, by check, the findings of the proofs younger than Hold and
// forgets the older ones. It returns nil when no proof is held, and the time
// of the latest proof.
func (s *Settler) held(now time.Time) (map[string]int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum map[string]int
	for id, p := range s.results {
		if now.Sub(p.at) > s.opts.Hold {
			delete(s.results, id)
			continue
		}
		if sum == nil {
			sum = make(map[string]int, len(p.checks))
		}
		for name, n := range p.checks {
			sum[name] += n
		}
	}
	return sum, s.lastProof
}

// Run settles at once, then every Interval until ctx is done. Failures are
// logged and retried on the next tick.
func (s *Settler) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		if err := s.Settle(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sale settlement", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Settle proves, on the database's clock, each running sale and the last
// sale that ended at least FinalDelay ago (its final proof, once), each when
// this instance takes its lock. A running sale's lock lasts 9/10 of an
// Interval and is not released, so the deployment proves it about once per
// Interval, mostly on the same instance; a final proof's lock lasts a day.
// When the lock cannot be taken (Redis down) the instance proves anyway.
// One Settle takes at most 30 s.
func (s *Settler) Settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, proofTimeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		(SELECT id, false FROM sales WHERE started_at <= now() AND ended_at > now() ORDER BY started_at DESC LIMIT 4)
		UNION ALL
		(SELECT id, true FROM sales WHERE ended_at <= now() - make_interval(secs => $1) ORDER BY ended_at DESC LIMIT 1)`,
		s.opts.FinalDelay.Seconds())
	if err != nil {
		return fmt.Errorf("settlement: sales to prove: %w", err)
	}
	type due struct {
		id    int64
		final bool
	}
	var dues []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.final); err != nil {
			rows.Close()
			return fmt.Errorf("settlement: sales to prove: %w", err)
		}
		dues = append(dues, d)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("settlement: sales to prove: %w", err)
	}
	var errs []error
	for _, d := range dues {
		if err := s.settle(ctx, d.id, d.final); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// settle proves one sale if this instance takes its lock. A failed proof
// releases the lock, so that another instance or the next tick proves it.
func (s *Settler) settle(ctx context.Context, saleID int64, final bool) error {
	ttl := s.opts.Interval * 9 / 10
	if final {
		s.mu.Lock()
		done := s.lastFinal == saleID
		s.lastFinal = saleID
		s.mu.Unlock()
		if done {
			return nil
		}
		ttl = finalLockTTL
	}
	unlock := func(context.Context) {}
	if s.opts.Locker != nil {
		u, ok, err := s.opts.Locker.LockSettlement(ctx, saleID, final, ttl)
		switch {
		case err != nil:
			s.log.Debug("sale settlement without lock", "sale_id", saleID, "err", err)
		case !ok:
			return nil
		default:
			unlock = u
		}
	}
	if err := s.prove(ctx, saleID, final); err != nil {
		unlock(context.WithoutCancel(ctx))
		if final {
			s.mu.Lock()
			s.lastFinal = 0
			s.mu.Unlock()
		}
		return err
	}
	return nil
}

// prove checks one sale, records the result for export and logs it.
func (s *Settler) prove(ctx context.Context, saleID int64, final bool) error {
	start := time.Now()
	r, err := Check(ctx, s.db, saleID)
	if err != nil {
		return fmt.Errorf("settlement of sale %d: %w", saleID, err)
	}
	now := time.Now()
	s.duration.Record(ctx, now.Sub(start).Seconds())
	s.mu.Lock()
	s.results[saleID] = proof{at: now, checks: r.Checks}
	s.lastProof = now
	s.mu.Unlock()
	for _, c := range checks {
		if n := r.Checks[c.name]; n > 0 {
			s.log.Error("sale settlement violation", "sale_id", saleID, "final", final, "check", c.name, "count", n, "violation", c.describe(r, n))
		}
	}
	switch {
	case !r.OK():
	case final:
		s.log.Info("sale settled", "sale_id", saleID, "items_sold", r.ItemsSold, "total_items", r.TotalItems,
			"carts", r.Carts, "purchased_carts", r.PurchasedCarts, "buyers", r.Buyers, "took", now.Sub(start))
	default:
		s.log.Debug("sale settlement proven", "sale_id", saleID, "took", now.Sub(start))
	}
	return nil
}
