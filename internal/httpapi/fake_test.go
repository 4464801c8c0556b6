package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// fakeStore is an in-memory stand-in for every adapter of flashsale.Service
// (SaleStore, PurchaseStore, CartStore and Cache), so that handlers can be
// tested past validation without PostgreSQL or Redis. Its answers are set by
// the test; it checks no invariant itself.
type fakeStore struct {
	mu sync.Mutex

	sales map[int64]*flashsale.Sale
	items []flashsale.Item

	// Errors returned by the corresponding calls when non-nil.
	saleErr, addErr, lockErr, purchaseErr error
	// purchase is what Purchase returns.
	purchase *flashsale.Purchase
	// block, when not nil, holds AddToCart until it is closed; entered is
	// told each time AddToCart starts waiting on it.
	block, entered chan struct{}

	// Calls seen, for assertions.
	itemsOffset int
	itemsLimit  int
	attempts    []flashsale.Attempt
}

// The fake must keep implementing every adapter interface of the domain.
var (
	_ flashsale.SaleStore     = (*fakeStore)(nil)
	_ flashsale.PurchaseStore = (*fakeStore)(nil)
	_ flashsale.CartStore     = (*fakeStore)(nil)
	_ flashsale.Cache         = (*fakeStore)(nil)
)

// newFakeStore returns a store holding one running sale of 10 items.
func newFakeStore() (*fakeStore, *flashsale.Sale) {
	start := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	sale := &flashsale.Sale{ID: start.Unix(), StartedAt: start, EndedAt: start.Add(time.Hour), TotalItems: 10, ItemsSold: 2}
	return &fakeStore{sales: map[int64]*flashsale.Sale{sale.ID: sale}}, sale
}

func (f *fakeStore) CreateSale(_ context.Context, n flashsale.NewSale) (*flashsale.Sale, bool, error) {
	s := &flashsale.Sale{ID: n.Start.Unix(), StartedAt: n.Start, EndedAt: n.Start.Add(n.Duration), TotalItems: n.TotalItems}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sales[s.ID]; ok {
		return f.sales[s.ID], false, nil
	}
	f.sales[s.ID] = s
	return s, true, nil
}

func (f *fakeStore) Sale(_ context.Context, id int64) (*flashsale.Sale, error) {
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

func (f *fakeStore) ActiveSale(_ context.Context) (*flashsale.Sale, error) {
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

func (f *fakeStore) Items(_ context.Context, _ int64, offset, limit int) ([]flashsale.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.itemsOffset, f.itemsLimit = offset, limit
	return f.items, nil
}

func (f *fakeStore) Now(context.Context) (time.Time, error) {
	return time.Now(), nil
}

func (f *fakeStore) Purchase(context.Context, int64, string) (*flashsale.Purchase, error) {
	if f.purchaseErr != nil {
		return nil, f.purchaseErr
	}
	return f.purchase, nil
}

func (f *fakeStore) SaleState(context.Context, int64) (*flashsale.SaleState, error) {
	return &flashsale.SaleState{}, nil
}

func (f *fakeStore) Checkout(_ context.Context, a flashsale.Attempt) (flashsale.CartAdd, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, a)
	if a.Outcome != "" {
		return flashsale.CartAdd{}, nil
	}
	return flashsale.CartAdd{Code: a.Code, ItemsCount: 1}, nil
}

func (f *fakeStore) CheckCheckout(_ context.Context, _ *flashsale.Sale, _ string, _ int, newCode string) (string, error) {
	if f.block != nil {
		f.entered <- struct{}{}
		<-f.block
	}
	if f.addErr != nil {
		return "", f.addErr
	}
	return newCode, nil
}

func (f *fakeStore) SetCart(context.Context, *flashsale.Sale, string, string) error {
	return nil
}

func (f *fakeStore) Load(context.Context, *flashsale.Sale, *flashsale.SaleState) error {
	return nil
}

func (f *fakeStore) LockPurchase(context.Context, *flashsale.Sale, string, string) (string, bool, error) {
	if f.lockErr != nil {
		return "", false, f.lockErr
	}
	return "token", true, nil
}

func (f *fakeStore) CountMiss(context.Context, *flashsale.Sale, string) error {
	return nil
}

func (f *fakeStore) UnlockPurchase(context.Context, *flashsale.Sale, string, string) error {
	return nil
}

func (f *fakeStore) CompletePurchase(context.Context, *flashsale.Sale, string, string, *flashsale.Purchase) error {
	return nil
}

func (f *fakeStore) LockRotation(context.Context) (func(context.Context), bool, error) {
	return func(context.Context) {}, true, nil
}
