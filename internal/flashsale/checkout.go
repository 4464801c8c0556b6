package flashsale

import (
	"context"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen bounds user ids and every id-like parameter.
const MaxIDLen = 64

// Outcome of a checkout attempt that was accepted; rejected attempts record
// their error code instead.
const OutcomeAccepted = "accepted"

// ValidateUserID returns EInvalidUserID unless id is 1 to 64 bytes of
// printable UTF-8 without spaces.
func ValidateUserID(id string) error {
	if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
		return Errorf(EInvalidUserID, "user_id must be 1 to %d printable characters", MaxIDLen)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return Errorf(EInvalidUserID, "user_id must be 1 to %d printable characters", MaxIDLen)
		}
	}
	return nil
}

// CheckoutResult is what a successful checkout returns.
type CheckoutResult struct {
	Code       string
	ItemsCount int
	SaleEndsAt time.Time
}

// Attempt is one well-formed checkout request, as the cart store records it.
type Attempt struct {
	SaleID int64 // 0 when the item names no known sale
	UserID string
	ItemID int64
	// Outcome is the error code of a checkout refused before its cart was
	// looked at (no such item, sale not running, item sold, user at the limit
	// by items bought); empty for a checkout the cart store decides.
	Outcome string
	// Limit is the sale's user item limit, for a checkout the store decides.
	Limit int
	// Code opens the user's cart when the user has no open cart: the code the
	// cache gave out for it. NewCode replaces it when Code already names a
	// cart (a purchased one the cache did not know of).
	Code, NewCode string
}

// CartAdd is a checkout the cart store accepted: the item is in the cart
// with this code, which then holds ItemsCount items.
type CartAdd struct {
	Code       string
	ItemsCount int
}

// CartStore owns carts and records every checkout attempt. PostgreSQL is the
// implementation: an accepted checkout and the purchase of its cart are
// ordered by the cart's row, so an item acknowledged into a cart is in that
// cart's purchase result.
type CartStore interface {
	// Checkout records the attempt and returns once it is committed. For an
	// attempt without an Outcome it adds the item to the user's open cart,
	// opening one when the user has none, and returns the cart, or
	// EAlreadyInCart or EUserLimit (recorded as the attempt's outcome). It
	// returns EUnavailable when the attempt could not be recorded: then
	// nothing was.
	Checkout(ctx context.Context, a Attempt) (CartAdd, error)
}

// ErrNotLoaded is returned by a Cache whose state for a sale must first be
// loaded from the store (new sale, or cache data lost).
var ErrNotLoaded = Errorf(EUnavailable, "sale state is loading")

// Cache is the fast path that holds per-sale hints: sold items, items bought
// per user, each user's open cart and the sale's codes. It may lose its data or
// go back in time at any moment; the service then reloads it from the store.
// Its answers are "maybe" or facts the store committed: it never decides a
// sale, PostgreSQL does.
type Cache interface {
	// CheckCheckout is a checkout's fast path. It returns ERateLimited (with
	// a RetryAfter) when the user's checkout budget is spent, EItemSold or
	// EUserLimit (items bought, not held) when the store committed so, and
	// otherwise the code of the user's open cart as the cache knows it,
	// opening it as newCode when the cache knows none. It returns ErrNotLoaded
	// or EUnavailable.
	CheckCheckout(ctx context.Context, s *Sale, userID string, seq int, newCode string) (code string, err error)
	// SetCart records that code is the user's open cart, when the store chose
	// another cart than the cache named.
	SetCart(ctx context.Context, s *Sale, userID, code string) error
	// Load replaces the cache's state of a sale by st and marks it loaded.
	Load(ctx context.Context, s *Sale, st *SaleState) error
	// LockPurchase takes the short lock of one code's purchase; known is
	// false when the cache does not know the code, which the store must then
	// look up. It returns ERateLimited when the client's budget of codes the
	// store did not know is spent (for codes the cache does not know), and
	// EPurchaseBusy while another purchase of the code holds the lock, or
	// EUnavailable.
	LockPurchase(ctx context.Context, s *Sale, code, client string) (token string, known bool, err error)
	// CountMiss takes one from the client's budget of unknown codes.
	CountMiss(ctx context.Context, s *Sale, client string) error
	// UnlockPurchase releases the lock, if token still holds it.
	UnlockPurchase(ctx context.Context, s *Sale, code, token string) error
	// CompletePurchase records a committed purchase (items sold, the user's
	// authoritative bought count, the code known, the cart closed) and
	// releases the lock.
	CompletePurchase(ctx context.Context, s *Sale, code, token string, p *Purchase) error
	// LockRotation takes the lock of sale rotation, held by one instance at a
	// time while it creates upcoming sales. It returns ok=false while another
	// instance holds it, or EUnavailable. unlock releases it.
	LockRotation(ctx context.Context) (unlock func(context.Context), ok bool, err error)
}

// SaleState is the authoritative per-sale state the cache is rebuilt from,
// read from the cart and purchase rows.
type SaleState struct {
	SoldSeqs []int
	Bought   map[string]int    // user id -> items bought
	Open     map[string]string // user id -> code of the open cart
	Codes    map[string]string // every code of the sale -> its user
}
