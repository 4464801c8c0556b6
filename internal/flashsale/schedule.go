package flashsale

import (
	"context"
	"time"
)

// EnsureSales makes sure the sale of the current slot and of the next one
// exist, so that a sale is always running and the next one is ready before it
// starts. Sales this instance already knows cost nothing. The others are
// created under the rotation lock, so one instance at a time writes a sale's
// items while the rest read what it made; without Redis each instance creates
// them itself, which the store makes safe (one sale per start time).
func (s *Service) EnsureSales(ctx context.Context) error {
	if err := s.SyncClock(ctx); err != nil {
		return err
	}
	cur := SaleStart(s.Now(), s.cfg.SaleDuration)
	defer s.Forget(cur.Add(-2 * s.cfg.SaleDuration))
	var missing []time.Time
	for _, start := range []time.Time{cur, cur.Add(s.cfg.SaleDuration)} {
		if _, ok := s.known.Load(SaleID(start)); !ok {
			missing = append(missing, start)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	unlock, ok, err := s.cache.LockRotation(ctx)
	switch {
	case err != nil:
		s.log.Debug("sale rotation without lock", "err", err)
	case !ok:
		return s.readSales(ctx, missing)
	default:
		defer unlock(context.WithoutCancel(ctx))
	}
	for _, start := range missing {
		sale, created, err := s.sales.CreateSale(ctx, NewSale{Start: start, Duration: s.cfg.SaleDuration, TotalItems: s.cfg.SaleItems, UserItemLimit: s.cfg.UserItemLimit})
		if err != nil {
			return err
		}
		s.remember(sale)
		if created {
			s.log.Info("sale created", "sale_id", sale.ID, "started_at", sale.StartedAt, "ended_at", sale.EndedAt, "total_items", sale.TotalItems)
		}
	}
	return nil
}

// readSales learns the sales another instance is creating. A sale not there
// yet is reported as EUnavailable, and retried on the next tick.
func (s *Service) readSales(ctx context.Context, starts []time.Time) error {
	for _, start := range starts {
		if _, err := s.Sale(ctx, SaleID(start)); err != nil {
			if ErrorCode(err) == ENotFound {
				return Errorf(EUnavailable, "sale %d is being created by another instance", SaleID(start))
			}
			return err
		}
	}
	return nil
}

// SchedulerInterval is how often RunScheduler checks the schedule: often
// enough that the next sale exists well before its start.
func (s *Service) SchedulerInterval() time.Duration {
	return min(max(s.cfg.SaleDuration/10, 100*time.Millisecond), 15*time.Second)
}

// RunScheduler calls EnsureSales every SchedulerInterval until ctx is done.
// Failures (a database outage) are logged and retried on the next tick.
func (s *Service) RunScheduler(ctx context.Context) {
	t := time.NewTicker(s.SchedulerInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.EnsureSales(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("ensure sales", "err", err)
			}
		}
	}
}
