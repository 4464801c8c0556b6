package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// itemsPageLimit is the largest page the API serves: discovery takes the
// fewest requests.
const itemsPageLimit = 1000

// findSale returns the sale to load: a fresh one with -create-sale, the one
// of -sale, or the active one. c should not record: finding the sale is not
// part of the load.
func findSale(ctx context.Context, cfg Config, c *Client) (s Sale, created bool, err error) {
	switch {
	case cfg.CreateSale:
		// Sales are keyed by their start second: a sale created in the same
		// second as another is a 409, which the next second cures.
		for range 3 {
			var res Response
			s, res = c.CreateSale(ctx, cfg.Items, cfg.SaleDuration)
			if res.OK() {
				return s, true, nil
			}
			if res.Status != 409 && !res.Retryable() {
				return s, false, fmt.Errorf("create sale: %s", res)
			}
			err = fmt.Errorf("create sale: %s", res)
			if !sleepCtx(ctx, time.Second) {
				return s, false, ctx.Err()
			}
		}
		return s, false, err
	case cfg.SaleID != 0:
		res := retrying(ctx, func() (res Response) { s, res = c.Sale(ctx, cfg.SaleID); return res })
		if !res.OK() {
			return s, false, fmt.Errorf("sale %d: %s", cfg.SaleID, res)
		}
		return s, false, nil
	}
	res := retrying(ctx, func() (res Response) { s, res = c.ActiveSale(ctx); return res })
	if !res.OK() {
		return s, false, fmt.Errorf("active sale: %s", res)
	}
	return s, false, nil
}

// discoveryAttempts bounds how often retrying sends one request.
const discoveryAttempts = 10

// retrying sends a request of the discovery before the load until it is
// answered 2xx or with something not retryable, or discoveryAttempts run
// out, waiting what each retryable answer asks for: the service may be busy
// with other load, or restarting.
func retrying(ctx context.Context, send func() Response) Response {
	for i := 1; ; i++ {
		res := send()
		if res.OK() || !res.Retryable() || i == discoveryAttempts || !sleepCtx(ctx, res.Backoff()) {
			return res
		}
	}
}

// discoverItems pages through the sale's items and returns the unsold ones.
func discoverItems(ctx context.Context, c *Client, s Sale) (*ItemPool, error) {
	var unsold []int64
	for offset := 0; ; offset += itemsPageLimit {
		var page []Item
		res := retrying(ctx, func() (res Response) { page, res = c.Items(ctx, s.ID, offset, itemsPageLimit); return res })
		if !res.OK() {
			return nil, fmt.Errorf("items of sale %d at offset %d: %s", s.ID, offset, res)
		}
		for _, it := range page {
			if !it.Sold {
				unsold = append(unsold, it.ID)
			}
		}
		if len(page) < itemsPageLimit {
			return NewItemPool(unsold), nil
		}
	}
}

// ItemPool holds the items the load believes unsold. An item leaves it when
// the service says it is sold (a checkout answered item_sold, or a purchase
// reported it sold), so an empty pool means the sale is sold out as far as
// this run can tell. Checkouts reserve nothing, so an item in some cart stays.
type ItemPool struct {
	mu  sync.Mutex
	ids []int64
	pos map[int64]int // index of each id in ids, for removal in O(1)
}

// NewItemPool returns a pool of ids, which it keeps.
func NewItemPool(ids []int64) *ItemPool {
	p := &ItemPool{ids: ids, pos: make(map[int64]int, len(ids))}
	for i, id := range ids {
		p.pos[id] = i
	}
	return p
}

// Pick returns a random unsold item, false when none is left.
func (p *ItemPool) Pick(rng *rand.Rand) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return 0, false
	}
	return p.ids[rng.IntN(len(p.ids))], true
}

// Remove takes a sold item out of the pool and returns how many are left.
func (p *ItemPool) Remove(id int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.pos[id]; ok {
		last := len(p.ids) - 1
		p.ids[i] = p.ids[last]
		p.pos[p.ids[i]] = i
		p.ids = p.ids[:last]
		delete(p.pos, id)
	}
	return len(p.ids)
}

// Len returns how many items are left.
func (p *ItemPool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// sleepCtx waits for d and reports whether ctx was still running then.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
