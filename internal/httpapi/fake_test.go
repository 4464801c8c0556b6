package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// fakeService is an in-memory Service whose answers the test sets, so that
// handlers can be tested past validation without PostgreSQL or Redis.
type fakeService struct {
	mu sync.Mutex

	sales map[int64]*flashsale.Sale
	items []flashsale.Item

	// Errors returned by the corresponding calls when non-nil.
	saleErr, checkoutErr, purchaseErr error
	// purchase is what Purchase returns.
	purchase *flashsale.Purchase
	// limitedUser's checkouts are refused for the user's budget, with a
	// wait of a minute.
	limitedUser string
	// block, when not nil, holds Checkout until it is closed; entered is
	// told each time Checkout starts waiting on it.
	block, entered chan struct{}

	// Calls seen, for assertions.
	checkouts   int
	itemsOffset int
	itemsLimit  int
}

var _ Service = (*fakeService)(nil)

// newFakeService returns a service holding one running sale of 10 items, 2
// of them sold.
func newFakeService() (*fakeService, *flashsale.Sale) {
	start := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	sale := &flashsale.Sale{ID: start.Unix(), StartedAt: start, EndedAt: start.Add(time.Hour), TotalItems: 10, ItemsSold: 2, UserItemLimit: 10}
	return &fakeService{sales: map[int64]*flashsale.Sale{sale.ID: sale}}, sale
}

// Checkout puts any item of a known sale in a new cart.
func (f *fakeService) Checkout(ctx context.Context, userID string, itemID int64) (flashsale.CheckoutResult, int64, error) {
	f.mu.Lock()
	f.checkouts++
	block, limited := f.block, f.limitedUser != "" && f.limitedUser == userID
	f.mu.Unlock()
	if block != nil {
		f.entered <- struct{}{}
		<-block
	}
	saleID, _ := flashsale.SplitItemID(itemID)
	sale, err := f.Sale(ctx, saleID)
	if err != nil {
		return flashsale.CheckoutResult{}, 0, flashsale.Errorf(flashsale.EItemNotFound, "no item %d", itemID)
	}
	if f.checkoutErr != nil {
		return flashsale.CheckoutResult{}, sale.ID, f.checkoutErr
	}
	if limited {
		return flashsale.CheckoutResult{}, sale.ID, &flashsale.Error{Code: flashsale.ERateLimited, Message: "too many requests for this user, retry later", Err: flashsale.RetryAfter(time.Minute)}
	}
	return flashsale.CheckoutResult{Code: flashsale.NewCode(sale.ID), ItemsCount: 1, SaleEndsAt: sale.EndedAt}, sale.ID, nil
}

// Purchase answers f.purchase for a code of a known sale.
func (f *fakeService) Purchase(ctx context.Context, code, _ string) (*flashsale.Purchase, error) {
	if f.purchaseErr != nil {
		return nil, f.purchaseErr
	}
	saleID, err := flashsale.ParseCode(code)
	if err != nil {
		return nil, err
	}
	if _, err := f.Sale(ctx, saleID); err != nil {
		return nil, flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code")
	}
	if f.purchase == nil {
		return &flashsale.Purchase{SaleID: saleID}, nil
	}
	return f.purchase, nil
}

func (f *fakeService) Sale(_ context.Context, id int64) (*flashsale.Sale, error) {
	if f.saleErr != nil {
		return nil, f.saleErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.sales[id]; ok {
		cp := *s
		return &cp, nil
	}
	return nil, flashsale.Errorf(flashsale.ENotFound, "no sale %d", id)
}

func (f *fakeService) ActiveSale(_ context.Context) (*flashsale.Sale, error) {
	if f.saleErr != nil {
		return nil, f.saleErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sales {
		if s.Running(time.Now()) {
			cp := *s
			return &cp, nil
		}
	}
	return nil, flashsale.Errorf(flashsale.ENotFound, "no active sale")
}

func (f *fakeService) Items(ctx context.Context, saleID int64, offset, limit int) ([]flashsale.Item, error) {
	if _, err := f.Sale(ctx, saleID); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.itemsOffset, f.itemsLimit = offset, limit
	return f.items, nil
}

// CreateSale validates the sale as the service does and creates it now;
// EConflict when a sale starts in the same second.
func (f *fakeService) CreateSale(_ context.Context, totalItems int, d time.Duration) (*flashsale.Sale, error) {
	n := flashsale.NewSale{Start: time.Now().Truncate(time.Second).UTC(), Duration: d, TotalItems: totalItems, UserItemLimit: 10}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	s := &flashsale.Sale{ID: n.Start.Unix(), StartedAt: n.Start, EndedAt: n.Start.Add(d), TotalItems: totalItems, UserItemLimit: 10}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sales[s.ID]; ok {
		return nil, flashsale.Errorf(flashsale.EConflict, "a sale starting at %s exists", n.Start.Format(time.RFC3339))
	}
	f.sales[s.ID] = s
	return s, nil
}
