package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// refusalKey is one row of checkout_refusals.
type refusalKey struct {
	minute time.Time
	reason string
	userID string // "" when the refusal is not per user
}

// refusalTally counts the checkouts refused before their decision until a
// transaction adds the counts to checkout_refusals. Its memory is bounded:
// at most maxUsers keys carry a user id; the refusals of further users are
// counted under user id "" (overflow says how many were).
type refusalTally struct {
	mu       sync.Mutex
	counts   map[refusalKey]int64
	users    int // keys of counts with a user id
	maxUsers int
	overflow int64 // refusals counted under "" for want of room since the last write

	// writing is held by the one transaction writing counts, so that an
	// instance's transactions never wait on each other's refusal rows.
	writing sync.Mutex
}

func newRefusalTally(maxUsers int) *refusalTally {
	return &refusalTally{counts: map[refusalKey]int64{}, maxUsers: maxUsers}
}

// record counts n refusals of key.
func (t *refusalTally) record(k refusalKey, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.add(k, n)
}

func (t *refusalTally) add(k refusalKey, n int64) {
	if k.userID != "" {
		if _, ok := t.counts[k]; !ok {
			if t.users >= t.maxUsers {
				t.overflow += n
				k.userID = ""
			} else {
				t.users++
			}
		}
	}
	t.counts[k] += n
}

// take hands the pending counts to a writer, which must then call done with
// whether it wrote them. It returns nil when nothing is pending or another
// writer is writing counts.
func (t *refusalTally) take() (pending map[refusalKey]int64, overflow int64) {
	if !t.writing.TryLock() {
		return nil, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.counts) == 0 {
		t.writing.Unlock()
		return nil, 0
	}
	pending, overflow = t.counts, t.overflow
	t.counts, t.users, t.overflow = make(map[refusalKey]int64, len(pending)), 0, 0
	return pending, overflow
}

// done ends the write of pending (taken by take); counts that were not
// written are counted again, within the bound.
func (t *refusalTally) done(pending map[refusalKey]int64, overflow int64, written bool) {
	if pending == nil {
		return
	}
	if !written {
		t.mu.Lock()
		for k, n := range pending {
			t.add(k, n)
		}
		t.overflow += overflow
		t.mu.Unlock()
	}
	t.writing.Unlock()
}

var qAddRefusals = newQuery("insert", "checkout_refusals", `
INSERT INTO checkout_refusals AS r (minute, reason, user_id, refused)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (minute, reason, user_id) DO UPDATE SET refused = r.refused + EXCLUDED.refused`)

// writeRefusals adds pending to checkout_refusals in key order, so that
// transactions of several instances lock the rows they share in one order.
func (db *DB) writeRefusals(ctx context.Context, q querier, pending map[refusalKey]int64) error {
	keys := make([]refusalKey, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b refusalKey) int {
		return cmp.Or(a.minute.Compare(b.minute), cmp.Compare(a.reason, b.reason), cmp.Compare(a.userID, b.userID))
	})
	minutes, reasons, users, counts := make([]time.Time, len(keys)), make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		minutes[i], reasons[i], users[i], counts[i] = k.minute, k.reason, k.userID, pending[k]
	}
	if _, err := db.exec(ctx, q, qAddRefusals, minutes, reasons, users, counts); err != nil {
		return fmt.Errorf("add checkout refusals: %w", err)
	}
	return nil
}

// RecordRefusal counts one checkout refused before its decision, for reason
// and, when the refusal is per user, userID (else ""). It never waits on
// PostgreSQL: the count is added to checkout_refusals by the next checkout
// batch's transaction, or within RefusalFlush when no batch comes, or at
// Close. Counts not yet written are lost if the process dies.
func (s *CartStore) RecordRefusal(reason, userID string) {
	s.refusals.record(refusalKey{minute: time.Now().UTC().Truncate(time.Minute), reason: reason, userID: userID}, 1)
}

// flushRefusals writes the pending refusal counts in a transaction of their
// own. It returns nil when there were none, or another writer had them.
func (s *CartStore) flushRefusals(ctx context.Context) error {
	pending, overflow := s.refusals.take()
	if pending == nil {
		return nil
	}
	err := s.db.transact(ctx, nil, func(tx *txn) error { return s.db.writeRefusals(ctx, tx, pending) })
	s.wroteRefusals(pending, overflow, err)
	return err
}

// wroteRefusals ends a write of refusal counts. Counts whose transaction
// failed are kept for the next write; in the rare failure whose commit
// PostgreSQL could not be asked about (transact's "commit outcome unknown"),
// they may have committed and are then written twice.
func (s *CartStore) wroteRefusals(pending map[refusalKey]int64, overflow int64, err error) {
	s.refusals.done(pending, overflow, err == nil)
	if err == nil && overflow > 0 {
		s.opts.Logger.Warn("checkout refusals counted without their user id: too many users refused at once",
			"refusals", overflow, "max_users", s.opts.RefusalUsers)
	}
}

// flushRefusalsEvery writes pending refusal counts every interval until stop
// is closed, then once more.
func (s *CartStore) flushRefusalsEvery(interval time.Duration, stop <-chan struct{}) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-t.C:
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
			defer cancel()
			if err := s.flushRefusals(ctx); err != nil {
				return fmt.Errorf("checkout refusals not written: %w", err)
			}
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		err := s.flushRefusals(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			s.opts.Logger.Warn("checkout refusals not written yet, kept in memory", "err", err)
		case err == nil && failing:
			s.opts.Logger.Info("checkout refusals written again")
		}
		failing = err != nil
	}
}
