package flashsale

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Recording a checkout's attempt may take the request's remaining time, but
// at least attemptGrace (a request that ran out of time in Redis still gets
// its attempt written when the database answers) and at most attemptTimeout.
const (
	attemptGrace   = time.Second
	attemptTimeout = 5 * time.Second
)

// attemptBudget returns how long a checkout with ctx may take to record its
// attempt.
func attemptBudget(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return attemptTimeout
	}
	return min(max(time.Until(d), attemptGrace), attemptTimeout)
}

// Config holds the rules of the sales a Service runs.
type Config struct {
	SaleItems     int           // items of each scheduled sale
	SaleDuration  time.Duration // length of a sale slot; sales start on multiples of it
	UserItemLimit int           // items one user may buy per sale
	// PurchaseWait bounds how long a purchase waits for a concurrent purchase
	// of the same code before answering EPurchaseBusy.
	PurchaseWait time.Duration
}

// Service runs sales: it validates requests, takes the cache's fast path and
// commits through the stores. It holds no authoritative state of its own.
type Service struct {
	cfg       Config
	sales     SaleStore
	purchases PurchaseStore
	carts     CartStore
	cache     Cache
	log       *slog.Logger

	clockOffset atomic.Int64 // database clock minus local clock, in ns
	known       sync.Map     // sale id -> *Sale (window and size are immutable)
	loadMu      sync.Mutex   // serializes cache loads within the instance
}

// NewService returns a Service over the given adapters.
func NewService(cfg Config, sales SaleStore, purchases PurchaseStore, carts CartStore, cache Cache, log *slog.Logger) *Service {
	if cfg.PurchaseWait <= 0 {
		cfg.PurchaseWait = 2 * time.Second
	}
	return &Service{cfg: cfg, sales: sales, purchases: purchases, carts: carts, cache: cache, log: log}
}

// Now returns the current time on the database's clock, as last synchronised.
func (s *Service) Now() time.Time {
	return time.Now().Add(time.Duration(s.clockOffset.Load()))
}

// SyncClock measures the offset of the database clock, the reference for sale
// windows, so that checks on the fast path agree with the store.
func (s *Service) SyncClock(ctx context.Context) error {
	before := time.Now()
	db, err := s.sales.Now(ctx)
	if err != nil {
		return err
	}
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	s.clockOffset.Store(int64(db.Sub(mid)))
	return nil
}

// Sale returns the sale with the given id from the store, refreshing items_sold.
func (s *Service) Sale(ctx context.Context, id int64) (*Sale, error) {
	sale, err := s.sales.Sale(ctx, id)
	if err == nil {
		s.remember(sale)
	}
	return sale, err
}

// ActiveSale returns the most recently started running sale.
func (s *Service) ActiveSale(ctx context.Context) (*Sale, error) {
	sale, err := s.sales.ActiveSale(ctx)
	if err == nil {
		s.remember(sale)
	}
	return sale, err
}

// Items returns a page of a sale's items; ENotFound for an unknown sale.
func (s *Service) Items(ctx context.Context, saleID int64, offset, limit int) ([]Item, error) {
	if _, err := s.lookup(ctx, saleID); err != nil {
		return nil, err
	}
	return s.sales.Items(ctx, saleID, offset, limit)
}

// CreateSale creates a sale now, outside the schedule. EConflict when a sale
// with the same start second exists.
func (s *Service) CreateSale(ctx context.Context, totalItems int, d time.Duration) (*Sale, error) {
	n := NewSale{Start: s.Now().Truncate(time.Second).UTC(), Duration: d, TotalItems: totalItems, UserItemLimit: s.cfg.UserItemLimit}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	sale, created, err := s.sales.CreateSale(ctx, n)
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, Errorf(EConflict, "a sale starting at %s exists", n.Start.Format(time.RFC3339))
	}
	s.remember(sale)
	return sale, nil
}

func (s *Service) remember(sale *Sale) {
	cp := *sale
	s.known.Store(sale.ID, &cp)
}

// lookup returns a sale's immutable window and size, from memory when known.
func (s *Service) lookup(ctx context.Context, id int64) (*Sale, error) {
	if v, ok := s.known.Load(id); ok {
		return v.(*Sale), nil
	}
	sale, err := s.sales.Sale(ctx, id)
	if err != nil {
		return nil, err
	}
	s.remember(sale)
	return sale, nil
}

// Forget drops sales that ended before cutoff from memory.
func (s *Service) Forget(cutoff time.Time) {
	s.known.Range(func(k, v any) bool {
		if v.(*Sale).EndedAt.Before(cutoff) {
			s.known.Delete(k)
		}
		return true
	})
}

// Checkout adds an item to the user's cart and returns the cart's code. Every
// well-formed request within the user's checkout budget is recorded by the
// cart store, accepted or not, before Checkout returns. Besides that budget,
// the cache only turns away what the store committed (a sold item, a user
// who bought the limit) and names the user's cart; the store decides the
// rest. It returns EInvalidUserID, EInvalidItemID,
// EItemNotFound, ESaleNotStarted, ESaleEnded, ERateLimited, EItemSold,
// EAlreadyInCart, EUserLimit or EUnavailable.
func (s *Service) Checkout(ctx context.Context, userID string, itemID int64) (res CheckoutResult, saleID int64, err error) {
	if err := ValidateUserID(userID); err != nil {
		return res, 0, err
	}
	if itemID <= 0 {
		return res, 0, Errorf(EInvalidItemID, "id must be a positive integer")
	}
	a := Attempt{UserID: userID, ItemID: itemID}
	sale, code, err := s.checkCheckout(ctx, userID, itemID)
	if ErrorCode(err) == ERateLimited {
		// Over the user's budget: refused before the sale's rules, so
		// not an attempt (the caller counts such refusals).
		return res, sale.ID, err
	}
	if sale != nil {
		a.SaleID, a.Limit = sale.ID, sale.UserItemLimit
	}
	if err == nil {
		a.Code, a.NewCode = code, NewCode(sale.ID)
	} else {
		a.Outcome = ErrorCode(err)
	}
	// The attempt is recorded even when the request ran out of time: the
	// answer is an error then, but the record is still owed.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptBudget(ctx))
	add, rerr := s.carts.Checkout(rctx, a)
	cancel()
	if rerr != nil {
		return res, a.SaleID, rerr
	}
	if err != nil {
		return res, a.SaleID, err // refused before the cart, and recorded
	}
	if add.Code != code {
		// The store chose another cart than the cache named: the cache
		// follows, so that the user's next checkouts name it.
		if serr := s.cache.SetCart(ctx, sale, userID, add.Code); serr != nil {
			s.log.Warn("record cart in cache", "err", serr)
		}
	}
	return CheckoutResult{Code: add.Code, ItemsCount: add.ItemsCount, SaleEndsAt: sale.EndedAt}, a.SaleID, nil
}

// checkCheckout finds the item's sale and asks the cache whether the
// checkout may go ahead and which cart it names.
func (s *Service) checkCheckout(ctx context.Context, userID string, itemID int64) (*Sale, string, error) {
	saleID, seq := SplitItemID(itemID)
	sale, err := s.lookup(ctx, saleID)
	if ErrorCode(err) == ENotFound {
		return nil, "", Errorf(EItemNotFound, "no item %d", itemID)
	} else if err != nil {
		return nil, "", err
	}
	if seq < 1 || seq > sale.TotalItems {
		return sale, "", Errorf(EItemNotFound, "no item %d", itemID)
	}
	if err := sale.CheckRunning(s.Now()); err != nil {
		return sale, "", err
	}
	code, err := s.cache.CheckCheckout(ctx, sale, userID, seq, NewCode(sale.ID))
	if errors.Is(err, ErrNotLoaded) {
		code, err = s.loadAndCheck(ctx, sale, userID, seq)
	}
	return sale, code, err
}

// loadAndCheck rebuilds the cache's state of a sale from the store, then
// checks the checkout. Requests of this instance that find the state missing
// wait for one load and then go ahead; the cache itself keeps the first load
// published by concurrent instances.
func (s *Service) loadAndCheck(ctx context.Context, sale *Sale, userID string, seq int) (string, error) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	code, err := s.cache.CheckCheckout(ctx, sale, userID, seq, NewCode(sale.ID))
	if !errors.Is(err, ErrNotLoaded) {
		return code, err // loaded while this request waited
	}
	if err := s.loadCache(ctx, sale); err != nil {
		return "", err
	}
	return s.cache.CheckCheckout(ctx, sale, userID, seq, NewCode(sale.ID))
}

// loadCache publishes the store's state of a sale in the cache.
func (s *Service) loadCache(ctx context.Context, sale *Sale) error {
	st, err := s.purchases.SaleState(ctx, sale.ID)
	if err != nil {
		return err
	}
	if err := s.cache.Load(ctx, sale, st); err != nil {
		return err
	}
	s.log.Info("cache loaded", "sale_id", sale.ID, "sold", len(st.SoldSeqs), "open_carts", len(st.Open), "codes", len(st.Codes))
	return nil
}

// Purchase sells the items of the code's cart that are still available, within
// the user's limit. Purchasing a code again returns the original result. A
// code the cache does not know is looked up in the store, within client's
// budget of codes the store does not know either: only the store answers
// ECodeNotFound. It returns EInvalidCode, ECodeNotFound, ESaleNotStarted,
// ESaleEnded, EPurchaseBusy, ERateLimited or EUnavailable.
func (s *Service) Purchase(ctx context.Context, code, client string) (*Purchase, error) {
	saleID, err := ParseCode(code)
	if err != nil {
		return nil, err
	}
	sale, err := s.lookup(ctx, saleID)
	if ErrorCode(err) == ENotFound {
		return nil, Errorf(ECodeNotFound, "no cart with this code")
	} else if err != nil {
		return nil, err
	}
	token, known, err := s.lockPurchase(ctx, sale, code, client)
	if err != nil {
		return nil, err
	}
	p, err := s.purchases.Purchase(ctx, sale.ID, code)
	// The lock is released whatever the request's context says.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err != nil {
		if uerr := s.cache.UnlockPurchase(uctx, sale, code, token); uerr != nil {
			s.log.Warn("unlock purchase", "err", uerr)
		}
		if !known && ErrorCode(err) == ECodeNotFound {
			if merr := s.cache.CountMiss(uctx, sale, client); merr != nil {
				s.log.Warn("count unknown code", "err", merr)
			}
		}
		return nil, err
	}
	if cerr := s.cache.CompletePurchase(uctx, sale, code, token, p); cerr != nil {
		// The sale is committed; the cache only misses a fast-path hint and
		// the lock expires by itself.
		s.log.Warn("record purchase in cache", "err", cerr)
	}
	return p, nil
}

// lockPurchase takes the code's purchase lock, waiting while a concurrent
// purchase of the same code holds it.
func (s *Service) lockPurchase(ctx context.Context, sale *Sale, code, client string) (string, bool, error) {
	deadline := time.Now().Add(s.cfg.PurchaseWait)
	backoff := 2 * time.Millisecond
	for {
		token, known, err := s.cache.LockPurchase(ctx, sale, code, client)
		if ErrorCode(err) != EPurchaseBusy {
			return token, known, err
		}
		if time.Now().Add(backoff).After(deadline) {
			return "", false, err
		}
		select {
		case <-ctx.Done():
			return "", false, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}
