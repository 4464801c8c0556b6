package flashsale

import (
	"context"
	"time"
)

// EnsureSales creates the sale of the current slot and of the next one unless
// they exist, so that a sale is always running and the next one is ready
// before it starts. Any number of instances may call it at once: the store
// keeps exactly one sale per start time.
func (s *Service) EnsureSales(ctx context.Context) error {
	if err := s.SyncClock(ctx); err != nil {
		return err
	}
	cur := SaleStart(s.Now(), s.cfg.SaleDuration)
	for _, start := range []time.Time{cur, cur.Add(s.cfg.SaleDuration)} {
		sale, created, err := s.sales.CreateSale(ctx, NewSale{Start: start, Duration: s.cfg.SaleDuration, TotalItems: s.cfg.SaleItems, UserItemLimit: s.cfg.UserItemLimit})
		if err != nil {
			return err
		}
		s.remember(sale)
		if created {
			s.log.Info("sale created", "sale_id", sale.ID, "started_at", sale.StartedAt, "ended_at", sale.EndedAt, "total_items", sale.TotalItems)
		}
	}
	s.Forget(cur.Add(-2 * s.cfg.SaleDuration))
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
