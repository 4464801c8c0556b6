package flashsale

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// ports is an in-memory stand-in for every port of the Service: one running
// sale of 10 items; the errors the test sets are answered by their calls.
type ports struct {
	sale *Sale

	checkErr, lockErr, purchaseErr error
	attempts                       []Attempt // Checkout calls seen
}

var (
	_ SaleStore     = (*ports)(nil)
	_ PurchaseStore = (*ports)(nil)
	_ CartStore     = (*ports)(nil)
	_ Cache         = (*ports)(nil)
)

// newTestService returns a Service over ports.
func newTestService() (*Service, *ports) {
	start := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	p := &ports{sale: &Sale{ID: start.Unix(), StartedAt: start, EndedAt: start.Add(time.Hour), TotalItems: 10, UserItemLimit: 10}}
	cfg := Config{SaleItems: 10, SaleDuration: time.Hour, UserItemLimit: 10, PurchaseWait: 10 * time.Millisecond}
	return NewService(cfg, p, p, p, p, slog.New(slog.DiscardHandler)), p
}

func (p *ports) CreateSale(_ context.Context, n NewSale) (*Sale, bool, error) {
	if n.Start.Unix() == p.sale.ID {
		return p.sale, false, nil
	}
	return &Sale{ID: n.Start.Unix(), StartedAt: n.Start, EndedAt: n.Start.Add(n.Duration), TotalItems: n.TotalItems}, true, nil
}

func (p *ports) Sale(_ context.Context, id int64) (*Sale, error) {
	if id != p.sale.ID {
		return nil, Errorf(ENotFound, "no sale %d", id)
	}
	cp := *p.sale
	return &cp, nil
}

func (p *ports) ActiveSale(ctx context.Context) (*Sale, error) { return p.Sale(ctx, p.sale.ID) }

func (p *ports) Items(context.Context, int64, int, int) ([]Item, error) { return nil, nil }

func (p *ports) Now(context.Context) (time.Time, error) { return time.Now(), nil }

func (p *ports) Purchase(context.Context, int64, string) (*Purchase, error) {
	if p.purchaseErr != nil {
		return nil, p.purchaseErr
	}
	return &Purchase{SaleID: p.sale.ID}, nil
}

func (p *ports) SaleState(context.Context, int64) (*SaleState, error) { return &SaleState{}, nil }

func (p *ports) Checkout(_ context.Context, a Attempt) (CartAdd, error) {
	p.attempts = append(p.attempts, a)
	return CartAdd{Code: a.Code, ItemsCount: 1}, nil
}

func (p *ports) CheckCheckout(_ context.Context, _ *Sale, _ string, _ int, newCode string) (string, error) {
	return newCode, p.checkErr
}

func (p *ports) SetCart(context.Context, *Sale, string, string) error { return nil }

func (p *ports) Load(context.Context, *Sale, *SaleState) error { return nil }

func (p *ports) LockPurchase(context.Context, *Sale, string, string) (string, bool, error) {
	return "token", true, p.lockErr
}

func (p *ports) CountMiss(context.Context, *Sale, string) error { return nil }

func (p *ports) UnlockPurchase(context.Context, *Sale, string, string) error { return nil }

func (p *ports) CompletePurchase(context.Context, *Sale, string, string, *Purchase) error { return nil }

func (p *ports) LockRotation(context.Context) (func(context.Context), bool, error) {
	return func(context.Context) {}, true, nil
}

// TestCheckoutRecordsRefusals checks that a checkout the cache refuses is
// answered with the cache's code and recorded once, with that code as its
// outcome.
func TestCheckoutRecordsRefusals(t *testing.T) {
	for _, cause := range []error{
		Errorf(EItemSold, "sold"), Errorf(EAlreadyInCart, "in cart"), Errorf(EUserLimit, "limit"),
		Unavailable("redis", errors.New("dial tcp: connection refused")), errors.New("boom"),
	} {
		code := ErrorCode(cause)
		t.Run(code, func(t *testing.T) {
			svc, p := newTestService()
			p.checkErr = cause
			_, saleID, err := svc.Checkout(context.Background(), "bob", ItemID(p.sale.ID, 1))
			if ErrorCode(err) != code || saleID != p.sale.ID {
				t.Errorf("Checkout = sale %d, %v; want sale %d, %s", saleID, err, p.sale.ID, code)
			}
			if len(p.attempts) != 1 || p.attempts[0].Outcome != code {
				t.Errorf("attempts = %+v", p.attempts)
			}
		})
	}
}

// TestCheckoutOverBudgetIsNoAttempt checks that a checkout the cache refuses
// for the user's budget is answered so, with the wait, and not recorded: it
// was refused before the sale's rules (the HTTP layer counts it).
func TestCheckoutOverBudgetIsNoAttempt(t *testing.T) {
	svc, p := newTestService()
	p.checkErr = &Error{Code: ERateLimited, Message: "later", Err: RetryAfter(time.Minute)}
	_, saleID, err := svc.Checkout(context.Background(), "bob", ItemID(p.sale.ID, 1))
	var wait RetryAfter
	if ErrorCode(err) != ERateLimited || !errors.As(err, &wait) || time.Duration(wait) != time.Minute || saleID != p.sale.ID {
		t.Errorf("Checkout = sale %d, %v; want sale %d, %s after a minute", saleID, err, p.sale.ID, ERateLimited)
	}
	if len(p.attempts) != 0 {
		t.Errorf("attempts = %+v, want none", p.attempts)
	}
}

// TestPurchaseErrors checks the codes Purchase answers for the cache's and
// the store's failures, and for a code of an unknown sale.
func TestPurchaseErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*ports)
		code string
	}{
		{"busy", func(p *ports) { p.lockErr = Errorf(EPurchaseBusy, "busy") }, EPurchaseBusy},
		{"unknown code", func(p *ports) { p.lockErr = Errorf(ECodeNotFound, "no cart") }, ECodeNotFound},
		{"ended", func(p *ports) { p.purchaseErr = Errorf(ESaleEnded, "over") }, ESaleEnded},
		{"unavailable", func(p *ports) { p.purchaseErr = Unavailable("database", nil) }, EUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc, p := newTestService()
			tt.set(p)
			if _, err := svc.Purchase(context.Background(), NewCode(p.sale.ID), "192.0.2.1"); ErrorCode(err) != tt.code {
				t.Errorf("Purchase: %v, want %s", err, tt.code)
			}
		})
	}
	svc, p := newTestService()
	if _, err := svc.Purchase(context.Background(), NewCode(p.sale.ID+1), "192.0.2.1"); ErrorCode(err) != ECodeNotFound {
		t.Errorf("Purchase of an unknown sale's code: %v, want %s", err, ECodeNotFound)
	}
}
