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
	Code       string    `json:"code"`
	ItemsCount int       `json:"items_count"`
	SaleEndsAt time.Time `json:"sale_ends_at"`
}

// Attempt is the durable record of one well-formed checkout request.
type Attempt struct {
	SaleID  int64 // 0 when the item names no known sale
	UserID  string
	ItemID  int64
	Code    string // the cart's code when accepted
	Outcome string // OutcomeAccepted or an error code
}

// AttemptLog durably records checkout attempts. Record returns only once the
// attempt is committed, or with EUnavailable.
type AttemptLog interface {
	Record(ctx context.Context, a Attempt) error
}

// CartAdd is what the fast path reports for a checkout it accepted.
type CartAdd struct {
	Code       string
	ItemsCount int
}

// ErrNotLoaded is returned by a Cache whose state for a sale must first be
// loaded from the store (new sale, or cache data lost).
var ErrNotLoaded = Errorf(EUnavailable, "sale state is loading")

// Cache is the fast path that holds per-sale state: sold items, items bought per
// user, open carts and known codes. It may lose its data at any time; the
// service then reloads it from the store. Its answers never decide a sale:
// PostgreSQL does.
type Cache interface {
	// AddToCart adds item seq to the user's open cart, opening one with newCode
	// when the user has none. It returns EItemSold, EAlreadyInCart, EUserLimit,
	// ErrNotLoaded or EUnavailable.
	AddToCart(ctx context.Context, s *Sale, userID string, seq int, newCode string) (CartAdd, error)
	// RemoveFromCart undoes an AddToCart whose attempt could not be persisted.
	RemoveFromCart(ctx context.Context, s *Sale, code string, seq int) error
	// Load replaces the cache's state of a sale by st and marks it loaded.
	Load(ctx context.Context, s *Sale, st *SaleState) error
	// LockPurchase takes the short lock of one code's purchase. It returns
	// ECodeNotFound when the loaded state knows the code does not exist,
	// EPurchaseBusy while another purchase of the code holds the lock,
	// ErrNotLoaded or EUnavailable.
	LockPurchase(ctx context.Context, s *Sale, code string) (token string, err error)
	// UnlockPurchase releases the lock, if token still holds it.
	UnlockPurchase(ctx context.Context, s *Sale, code, token string) error
	// CompletePurchase records a committed purchase (items sold, the user's
	// authoritative bought count, the cart closed) and releases the lock.
	CompletePurchase(ctx context.Context, s *Sale, code, token string, p *Purchase) error
	// LockRotation takes the lock of sale rotation, held by one instance at a
	// time while it creates upcoming sales. It returns ok=false while another
	// instance holds it, or EUnavailable. unlock releases it.
	LockRotation(ctx context.Context) (unlock func(context.Context), ok bool, err error)
}

// SaleState is the authoritative per-sale state the cache is rebuilt from.
type SaleState struct {
	SoldSeqs  []int
	Bought    map[string]int // user id -> items bought
	OpenCarts []Cart
	// Codes maps every code of the sale (open or purchased) to its user.
	Codes map[string]string
}

// Cart is a user's set of checked-out items in one sale, named by its code.
type Cart struct {
	Code   string
	UserID string
	Seqs   []int
}
