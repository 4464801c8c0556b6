package redis

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// SettlementLock is the lock of the settlement proof (invariants.Settler):
// SET NX PX on one key per sale and kind, so one instance proves a sale per
// period. Unlike the rotation lock it is not released after the work: its
// expiry is the period. Attempts are counted in redis_lock_*_total with
// lock_type="settlement"; it has no hold time.
type SettlementLock struct {
	c      *Client
	prefix string
	lock   *lockType
}

// NewSettlementLock returns the settlement lock on c, its keys under prefix,
// counted by mp (the global meter provider when nil).
func NewSettlementLock(c *Client, prefix string, mp metric.MeterProvider) (*SettlementLock, error) {
	lm, err := newLockMetrics(mp)
	if err != nil {
		return nil, err
	}
	return &SettlementLock{c: c, prefix: prefix, lock: lm.lockType("settlement")}, nil
}

// LockSettlement implements invariants.SettlementLocker. It returns
// ok=false while another instance holds the lock, or EUnavailable. unlock
// deletes the key only if this call's token still holds it.
func (l *SettlementLock) LockSettlement(ctx context.Context, saleID int64, final bool, ttl time.Duration) (unlock func(context.Context), ok bool, err error) {
	kind := "running"
	if final {
		kind = "final"
	}
	key := l.prefix + ":lock:settlement:" + strconv.FormatInt(saleID, 10) + ":" + kind
	token := newToken()
	ok, err = l.c.rdb.SetNX(ctx, key, token, ttl).Result()
	switch {
	case err != nil:
		l.lock.attempted(ctx, lockError)
		return nil, false, unavailable(err)
	case !ok:
		l.lock.attempted(ctx, lockContended)
		return nil, false, nil
	}
	l.lock.attempted(ctx, "")
	return func(ctx context.Context) {
		// A failed release leaves the lock to expire.
		_ = unlockScript.Run(ctx, l.c.rdb, []string{key}, token).Err()
	}, true, nil
}
