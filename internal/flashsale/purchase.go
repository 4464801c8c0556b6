package flashsale

import "context"

// PurchasedItem is one item of a purchased cart and whether it was sold to the
// cart's user.
type PurchasedItem struct {
	ID   int64
	Name string
	Sold bool
}

// PurchaseResult is the response of a purchase; a replay returns the same.
type PurchaseResult struct {
	Success        bool
	Items          []PurchasedItem
	TotalPurchased int
	FailedCount    int
}

// Purchase is a committed purchase as the store reports it.
type Purchase struct {
	Result PurchaseResult
	SaleID int64
	UserID string
	// Replay is true when the code had already been purchased: nothing new was
	// sold and Result is the original result.
	Replay bool
	// UserBought is the user's authoritative count of items bought in the sale
	// after this purchase.
	UserBought int
}

// PurchaseStore sells carts. PostgreSQL is the implementation and enforces
// every invariant itself.
type PurchaseStore interface {
	// Purchase sells, in one transaction, the cart's items that are unsold,
	// within the user's limit, and records the result under the code. A code
	// purchased before returns its original result with Replay set. It returns
	// ECodeNotFound, ESaleEnded, ESaleNotStarted or EUnavailable.
	Purchase(ctx context.Context, saleID int64, code string) (*Purchase, error)
	// SaleState reads the state a Cache is rebuilt from.
	SaleState(ctx context.Context, saleID int64) (*SaleState, error)
}
