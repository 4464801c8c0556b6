package redis

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
)

var _ flashsale.Cache = (*Cache)(nil)

var (
	//go:embed scripts/add_to_cart.lua
	addToCartLua string
	//go:embed scripts/remove_from_cart.lua
	removeFromCartLua string
	//go:embed scripts/lock_purchase.lua
	lockPurchaseLua string
	//go:embed scripts/unlock.lua
	unlockLua string
	//go:embed scripts/complete_purchase.lua
	completePurchaseLua string
	//go:embed scripts/commit_load.lua
	commitLoadLua string

	addToCartScript        = redis.NewScript(addToCartLua)
	removeFromCartScript   = redis.NewScript(removeFromCartLua)
	lockPurchaseScript     = redis.NewScript(lockPurchaseLua)
	unlockScript           = redis.NewScript(unlockLua)
	completePurchaseScript = redis.NewScript(completePurchaseLua)
	commitLoadScript       = redis.NewScript(commitLoadLua)
)

// CacheOptions configure the fast path.
type CacheOptions struct {
	// Prefix starts every key, so several deployments (or tests) can share
	// one Redis. Keys of one sale share the hash tag {prefix:sale}, so a
	// sale's state lives in one Redis Cluster slot and its scripts stay atomic.
	Prefix string
	// PurchaseLockTTL bounds how long a crashed purchase can hold its code.
	PurchaseLockTTL time.Duration
	// LoadGrace is how long after a load unknown codes are still checked
	// against the database rather than rejected.
	LoadGrace time.Duration
	// Retention keeps a sale's keys this long after its end.
	Retention time.Duration
	// RotationLockTTL bounds how long a crashed instance can hold the lock of
	// sale rotation.
	RotationLockTTL time.Duration
	// PipelineMax bounds the script calls of one pipeline, PipelineWriters
	// the pipelines in flight, CommandTimeout one pipeline's round trip.
	PipelineMax, PipelineWriters int
	CommandTimeout               time.Duration
	MeterProvider                metric.MeterProvider
}

// Cache implements flashsale.Cache on Redis, one Lua script per operation so
// each is atomic and one round trip.
type Cache struct {
	c            *Client
	opts         CacheOptions
	purchaseLock *lockType
	rotationLock *lockType
	pipe         *pipeliner
	lastKeys     atomic.Pointer[saleKeys] // keys of the sale last asked for
}

// NewCache returns the fast path over c.
func NewCache(c *Client, opts CacheOptions) (*Cache, error) {
	if opts.Prefix == "" {
		opts.Prefix = "flashsale"
	}
	if opts.PurchaseLockTTL <= 0 {
		opts.PurchaseLockTTL = 10 * time.Second
	}
	if opts.LoadGrace <= 0 {
		opts.LoadGrace = time.Minute
	}
	if opts.Retention <= 0 {
		opts.Retention = time.Hour
	}
	if opts.RotationLockTTL <= 0 {
		opts.RotationLockTTL = 30 * time.Second
	}
	if opts.PipelineMax <= 0 {
		opts.PipelineMax = 128
	}
	if opts.PipelineWriters <= 0 {
		opts.PipelineWriters = 4
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 3 * time.Second
	}
	lm, err := newLockMetrics(opts.MeterProvider)
	if err != nil {
		return nil, err
	}
	return &Cache{
		c: c, opts: opts,
		purchaseLock: lm.lockType("purchase"), rotationLock: lm.lockType("sale_rotation"),
		pipe: newPipeliner(c.rdb, opts.PipelineMax, opts.PipelineWriters, opts.CommandTimeout),
	}, nil
}

// Close sends the calls still queued and stops the pipeline writers.
func (c *Cache) Close() error {
	c.pipe.close()
	return nil
}

// saleKeys are the keys of one sale's state.
type saleKeys struct {
	saleID                                         int64
	base                                           string
	ready, sold, bought, cart, cartn, items, codes string
	// addToCart are the keys of addToCartScript, in its order. Shared by
	// every call: go-redis copies keys into each command, never writes them.
	addToCart []string
}

// keys returns the keys of a sale's state. Nearly every request is for the
// running sale, so the last sale's keys are kept rather than built again.
func (c *Cache) keys(saleID int64) *saleKeys {
	if k := c.lastKeys.Load(); k != nil && k.saleID == saleID {
		return k
	}
	base := c.opts.Prefix + ":{" + c.opts.Prefix + ":" + strconv.FormatInt(saleID, 10) + "}:"
	k := &saleKeys{
		saleID: saleID,
		base:   base,
		ready:  base + "ready",
		sold:   base + "sold",
		bought: base + "bought",
		cart:   base + "cart",
		cartn:  base + "cartn",
		items:  base + "cartitems",
		codes:  base + "codes",
	}
	k.addToCart = []string{k.ready, k.sold, k.bought, k.cart, k.cartn, k.items, k.codes}
	c.lastKeys.Store(k)
	return k
}

func (c *Cache) expireAt(s *flashsale.Sale) int64 {
	return s.EndedAt.Add(c.opts.Retention).Unix()
}

// AddToCart implements flashsale.Cache.
func (c *Cache) AddToCart(ctx context.Context, s *flashsale.Sale, userID string, seq int, newCode string) (flashsale.CartAdd, error) {
	k := c.keys(s.ID)
	res, err := c.pipe.run(ctx, addToCartScript, k.addToCart,
		userID, seq, newCode, s.UserItemLimit, c.expireAt(s)).Slice()
	if err != nil {
		return flashsale.CartAdd{}, unavailable(err)
	}
	status, _ := res[0].(string)
	switch status {
	case "ok":
		code, _ := res[1].(string)
		n, _ := res[2].(int64)
		return flashsale.CartAdd{Code: code, ItemsCount: int(n)}, nil
	case "not_loaded":
		return flashsale.CartAdd{}, flashsale.ErrNotLoaded
	case flashsale.EItemSold:
		return flashsale.CartAdd{}, flashsale.Errorf(flashsale.EItemSold, "the item is sold")
	case flashsale.EAlreadyInCart:
		return flashsale.CartAdd{}, flashsale.Errorf(flashsale.EAlreadyInCart, "the item is already in the cart")
	case flashsale.EUserLimit:
		return flashsale.CartAdd{}, flashsale.Errorf(flashsale.EUserLimit, "at most %d items per user in this sale", s.UserItemLimit)
	}
	return flashsale.CartAdd{}, fmt.Errorf("add to cart: unexpected reply %v", res)
}

// RemoveFromCart implements flashsale.Cache.
func (c *Cache) RemoveFromCart(ctx context.Context, s *flashsale.Sale, code string, seq int) error {
	k := c.keys(s.ID)
	if err := c.pipe.run(ctx, removeFromCartScript, []string{k.cartn, k.items}, code, seq).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Load implements flashsale.Cache. The state is written to staging keys and
// published by one script, so concurrent loaders (every instance seeing the
// data lost at once) publish exactly one state and checkouts never see a
// half-loaded one.
func (c *Cache) Load(ctx context.Context, s *flashsale.Sale, st *flashsale.SaleState) error {
	k := c.keys(s.ID)
	stage := k.base + "stage:" + randomHex(8) + ":"
	staged := []string{stage + "sold", stage + "bought", stage + "cart", stage + "cartn", stage + "cartitems", stage + "codes"}
	pipe := c.c.rdb.Pipeline()
	for _, seq := range st.SoldSeqs {
		pipe.SetBit(ctx, staged[0], int64(seq), 1)
	}
	for user, n := range st.Bought {
		pipe.HSet(ctx, staged[1], user, n)
	}
	for _, cart := range st.OpenCarts {
		pipe.HSet(ctx, staged[2], cart.UserID, cart.Code)
		pipe.HSet(ctx, staged[3], cart.Code, len(cart.Seqs))
		for _, seq := range cart.Seqs {
			pipe.SAdd(ctx, staged[4], cart.Code+":"+strconv.Itoa(seq))
		}
	}
	for code, user := range st.Codes {
		pipe.HSet(ctx, staged[5], code, user)
	}
	for _, key := range staged {
		// A loader that dies before publishing leaves nothing for long.
		pipe.Expire(ctx, key, 5*time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable(err)
	}
	keys := append([]string{k.ready, k.sold, k.bought, k.cart, k.cartn, k.items, k.codes}, staged...)
	if err := c.pipe.run(ctx, commitLoadScript, keys, c.expireAt(s)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Purchase lock tokens carry their acquisition time, so the hold duration is
// measured without any state kept between lock and release.
func newToken() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36) + "." + randomHex(16)
}

func tokenTime(token string) (time.Time, bool) {
	ts, _, ok := strings.Cut(token, ".")
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(ts, 36, 64)
	return time.Unix(0, ns), err == nil
}

func (c *Cache) lockKey(k *saleKeys, code string) string { return k.base + "lock:purchase:" + code }

// LockPurchase implements flashsale.Cache.
func (c *Cache) LockPurchase(ctx context.Context, s *flashsale.Sale, code string) (string, error) {
	k := c.keys(s.ID)
	token := newToken()
	status, err := c.pipe.run(ctx, lockPurchaseScript, []string{k.ready, k.codes, c.lockKey(k, code)},
		code, token, c.opts.PurchaseLockTTL.Milliseconds(), c.opts.LoadGrace.Milliseconds()).Text()
	if err != nil {
		c.purchaseLock.attempted(ctx, lockError)
		return "", unavailable(err)
	}
	switch status {
	case "ok":
		c.purchaseLock.attempted(ctx, "")
		return token, nil
	case "busy":
		c.purchaseLock.attempted(ctx, lockContended)
		return "", flashsale.Errorf(flashsale.EPurchaseBusy, "this code is being purchased, retry shortly")
	case flashsale.ECodeNotFound:
		// Not a lock attempt: the code was rejected before the lock.
		return "", flashsale.Errorf(flashsale.ECodeNotFound, "no cart with this code")
	}
	return "", fmt.Errorf("lock purchase: unexpected reply %q", status)
}

// UnlockPurchase implements flashsale.Cache.
func (c *Cache) UnlockPurchase(ctx context.Context, s *flashsale.Sale, code, token string) error {
	c.releasedAt(ctx, token)
	if err := c.pipe.run(ctx, unlockScript, []string{c.lockKey(c.keys(s.ID), code)}, token).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// CompletePurchase implements flashsale.Cache.
func (c *Cache) CompletePurchase(ctx context.Context, s *flashsale.Sale, code, token string, p *flashsale.Purchase) error {
	c.releasedAt(ctx, token)
	k := c.keys(s.ID)
	args := make([]any, 0, 5+len(p.Result.Items))
	args = append(args, p.UserID, code, token, p.UserBought, c.expireAt(s))
	for _, it := range p.Result.Items {
		if it.Sold {
			_, seq := flashsale.SplitItemID(it.ID)
			args = append(args, seq)
		}
	}
	if err := c.pipe.run(ctx, completePurchaseScript, []string{k.sold, k.bought, k.cart, c.lockKey(k, code)}, args...).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

func (c *Cache) releasedAt(ctx context.Context, token string) {
	if since, ok := tokenTime(token); ok {
		c.purchaseLock.released(ctx, since)
	}
}

// LockRotation implements flashsale.Cache: SET NX PX on one key of the
// deployment, released by compare-and-delete so that a lock which expired
// and passed to another instance is left alone.
func (c *Cache) LockRotation(ctx context.Context) (unlock func(context.Context), ok bool, err error) {
	key := c.opts.Prefix + ":lock:sale_rotation"
	token := newToken()
	ok, err = c.c.rdb.SetNX(ctx, key, token, c.opts.RotationLockTTL).Result()
	switch {
	case err != nil:
		c.rotationLock.attempted(ctx, lockError)
		return nil, false, unavailable(err)
	case !ok:
		c.rotationLock.attempted(ctx, lockContended)
		return nil, false, nil
	}
	c.rotationLock.attempted(ctx, "")
	since := time.Now()
	return func(ctx context.Context) {
		c.rotationLock.released(ctx, since)
		// A failed release leaves the lock to expire after RotationLockTTL.
		_ = c.pipe.run(ctx, unlockScript, []string{key}, token).Err()
	}, true, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// unavailable reports a Redis failure as EUnavailable.
func unavailable(err error) error {
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis: unexpected nil reply: %w", err)
	}
	return flashsale.Unavailable("redis", err)
}
