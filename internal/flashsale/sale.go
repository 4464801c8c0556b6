package flashsale

import (
	"context"
	"time"
)

// MaxSaleItems bounds the number of items of one sale. Item ids embed the sale
// id and the item's 1-based sequence number below this bound.
const MaxSaleItems = 999_999

const itemIDFactor = MaxSaleItems + 1

// Sale is a time window in which a fixed set of items is sold. Its id is the
// Unix time of its start in seconds.
type Sale struct {
	ID         int64
	StartedAt  time.Time
	EndedAt    time.Time
	TotalItems int
	ItemsSold  int
	// UserItemLimit is how many items one user may buy in this sale, fixed
	// when the sale is created.
	UserItemLimit int
}

// SaleID returns the id of the sale that starts at t.
func SaleID(start time.Time) int64 { return start.Unix() }

// SaleStart returns the start of the sale slot of length d that contains t.
// Slots are aligned to multiples of d since the Unix epoch, so an hourly sale
// starts on the hour (UTC).
func SaleStart(t time.Time, d time.Duration) time.Time {
	return t.Truncate(d).UTC()
}

// Running reports whether the sale accepts checkouts and purchases at now.
func (s *Sale) Running(now time.Time) bool {
	return !now.Before(s.StartedAt) && now.Before(s.EndedAt)
}

// CheckRunning returns ESaleNotStarted or ESaleEnded when s is not running at now.
func (s *Sale) CheckRunning(now time.Time) error {
	if now.Before(s.StartedAt) {
		return Errorf(ESaleNotStarted, "the sale starts at %s", s.StartedAt.Format(time.RFC3339))
	}
	if !now.Before(s.EndedAt) {
		return Errorf(ESaleEnded, "the sale ended at %s", s.EndedAt.Format(time.RFC3339))
	}
	return nil
}

// Item is one unit for sale. Its id is SaleID*1,000,000 + its sequence number.
type Item struct {
	ID       int64
	SaleID   int64
	Name     string
	ImageURL string
	Sold     bool
}

// ItemID returns the id of the seq-th item (1-based) of a sale.
func ItemID(saleID int64, seq int) int64 { return saleID*itemIDFactor + int64(seq) }

// SplitItemID returns the sale id and sequence number encoded in an item id.
func SplitItemID(id int64) (saleID int64, seq int) {
	return id / itemIDFactor, int(id % itemIDFactor)
}

// NewSale describes a sale to create.
type NewSale struct {
	Start         time.Time
	Duration      time.Duration
	TotalItems    int
	UserItemLimit int
}

// Validate checks the bounds of a sale to create.
func (n NewSale) Validate() error {
	if n.TotalItems < 1 || n.TotalItems > MaxSaleItems {
		return Errorf(EInvalid, "total_items must be between 1 and %d", MaxSaleItems)
	}
	if n.UserItemLimit < 1 || n.UserItemLimit > 1000 {
		return Errorf(EInvalid, "user item limit must be between 1 and 1000")
	}
	if n.Duration < time.Second || n.Duration > 7*24*time.Hour {
		return Errorf(EInvalid, "duration must be between 1s and 168h")
	}
	return nil
}

// SaleStore persists sales and their items. PostgreSQL is the implementation.
type SaleStore interface {
	// CreateSale creates the sale and all its items in one transaction. It
	// returns created=false and the existing sale when another caller created
	// a sale with the same id first.
	CreateSale(ctx context.Context, n NewSale) (s *Sale, created bool, err error)
	// Sale returns the sale with the given id, or ENotFound.
	Sale(ctx context.Context, id int64) (*Sale, error)
	// ActiveSale returns the most recently started running sale, or ENotFound.
	ActiveSale(ctx context.Context) (*Sale, error)
	// Items returns a page of a sale's items ordered by id.
	Items(ctx context.Context, saleID int64, offset, limit int) ([]Item, error)
	// Now returns the database's clock, the reference for sale windows.
	Now(ctx context.Context) (time.Time, error)
}
