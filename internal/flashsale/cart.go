package flashsale

import "slices"

// Cart is a user's set of checked-out items in one sale, named by its code.
// The user's first accepted checkout in a sale opens one; later checkouts add
// to it while it is open; its purchase closes it, and the user's next
// checkout opens a new one.
type Cart struct {
	Code      string
	SaleID    int64
	UserID    string
	ItemIDs   []int64 // in checkout order
	Purchased bool
}

// UserKey names a user within a sale.
type UserKey struct {
	SaleID int64
	UserID string
}

// UserCount is how many items a user has bought in a sale, and may.
type UserCount struct {
	Bought int
	Limit  int
}

// Add adds itemID to the open cart c of a user whose purchases so far are u.
// It returns EAlreadyInCart when the item is in the cart, and EUserLimit when
// the items bought and held in the cart already reach the user's limit.
func (c *Cart) Add(itemID int64, u UserCount) error {
	if slices.Contains(c.ItemIDs, itemID) {
		return Errorf(EAlreadyInCart, "the item is already in the cart")
	}
	if u.Bought+len(c.ItemIDs) >= u.Limit {
		return Errorf(EUserLimit, "at most %d items per user in this sale", u.Limit)
	}
	c.ItemIDs = append(c.ItemIDs, itemID)
	return nil
}

// StockItem is an item as a purchase finds it.
type StockItem struct {
	Name string
	Sold bool
}

// SellCarts decides the purchase of open carts, in order: each cart's items
// that are unsold are sold to its user, in the cart's order, while the user's
// items bought stay within the limit; the others fail. An item missing from
// items fails. It marks the items sold and counts them in users (both must
// hold every item and user of the carts), and returns one result per cart.
// Earlier carts buy first, so the order of carts is the order of service.
func SellCarts(carts []*Cart, users map[UserKey]*UserCount, items map[int64]*StockItem) []PurchaseResult {
	results := make([]PurchaseResult, len(carts))
	for i, c := range carts {
		u := users[UserKey{c.SaleID, c.UserID}]
		res := PurchaseResult{Items: make([]PurchasedItem, 0, len(c.ItemIDs))}
		for _, id := range c.ItemIDs {
			pi := PurchasedItem{ID: id}
			if it := items[id]; it != nil {
				pi.Name = it.Name
				if !it.Sold && u.Bought < u.Limit {
					it.Sold, pi.Sold = true, true
					u.Bought++
				}
			}
			res.Items = append(res.Items, pi)
		}
		res.count()
		results[i] = res
	}
	return results
}

// count sets the totals of a result from its items.
func (r *PurchaseResult) count() {
	r.TotalPurchased, r.FailedCount = 0, 0
	for _, it := range r.Items {
		if it.Sold {
			r.TotalPurchased++
		} else {
			r.FailedCount++
		}
	}
	r.Success = r.TotalPurchased > 0
}

// NewPurchaseResult returns the result of a cart's items, given which of
// them were sold to it: what a replay of a purchased cart answers.
func NewPurchaseResult(items []PurchasedItem) PurchaseResult {
	r := PurchaseResult{Items: items}
	r.count()
	return r
}
