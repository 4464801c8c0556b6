package redis

import (
	"cmp"
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
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

var _ flashsale.Cache = (*Cache)(nil)

var (
	//go:embed scripts/check_checkout.lua
	checkCheckoutLua string
	//go:embed scripts/set_cart.lua
	setCartLua string
	//go:embed scripts/lock_purchase.lua
	lockPurchaseLua string
	//go:embed scripts/count_miss.lua
	countMissLua string
	//go:embed scripts/unlock.lua
	unlockLua string
	//go:embed scripts/complete_purchase.lua
	completePurchaseLua string
	//go:embed scripts/commit_load.lua
	commitLoadLua string

	checkCheckoutScript    = redis.NewScript(checkCheckoutLua)
	setCartScript          = redis.NewScript(setCartLua)
	lockPurchaseScript     = redis.NewScript(lockPurchaseLua)
	countMissScript        = redis.NewScript(countMissLua)
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
	// CodeMisses is how many purchases of codes that neither the cache nor
	// the database knows one client may make per MissWindow (guessing codes
	// costs a database look-up each); its purchases of codes the cache does
	// not know are then refused with ERateLimited until the window ends.
	CodeMisses int
	MissWindow time.Duration
	// UserCheckouts is each user's budget of checkouts in a sale, taken by
	// the checkout's own script (one round trip): Rate per Period (a second
	// when zero) with bursts of Burst; a Rate of 0 turns it off.
	UserCheckouts Budget
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

// WithDefaults fills the options left zero: keys under "flashsale", purchase
// locks of 10 seconds, 20 unknown codes a minute per client, keys kept an
// hour after the sale, rotation locks of 30 seconds, pipelines of 128 calls
// with 4 in flight and 3 seconds each, the global meter provider.
func (o CacheOptions) WithDefaults() CacheOptions {
	o.Prefix = cmp.Or(o.Prefix, "flashsale")
	o.PurchaseLockTTL = cmp.Or(o.PurchaseLockTTL, 10*time.Second)
	o.CodeMisses = cmp.Or(o.CodeMisses, 20)
	o.MissWindow = cmp.Or(o.MissWindow, time.Minute)
	o.Retention = cmp.Or(o.Retention, time.Hour)
	o.RotationLockTTL = cmp.Or(o.RotationLockTTL, 30*time.Second)
	o.PipelineMax = cmp.Or(o.PipelineMax, 128)
	o.PipelineWriters = cmp.Or(o.PipelineWriters, 4)
	o.CommandTimeout = cmp.Or(o.CommandTimeout, 3*time.Second)
	o.MeterProvider = cmp.Or(o.MeterProvider, otel.GetMeterProvider())
	return o
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
	opts = opts.WithDefaults()
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
	saleID                           int64
	base                             string
	ready, sold, bought, cart, codes string
	// checkout are the keys of checkCheckoutScript, in its order. Shared by
	// every call: go-redis copies keys into each command, never writes them.
	checkout []string
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
		codes:  base + "codes",
	}
	k.checkout = []string{k.ready, k.sold, k.bought, k.cart, k.codes}
	c.lastKeys.Store(k)
	return k
}

func (c *Cache) expireAt(s *flashsale.Sale) int64 {
	return s.EndedAt.Add(c.opts.Retention).Unix()
}

// Budget is a budget of Rate requests per Period (a second when zero) with
// bursts of up to Burst; a Rate of 0 turns it off.
type Budget struct {
	Rate, Burst int
	Period      time.Duration
}

// interval is the time between two requests at the budget's rate, in
// seconds; 0 when the budget is off.
func (b Budget) interval() float64 {
	if b.Rate <= 0 {
		return 0
	}
	return cmp.Or(b.Period, time.Second).Seconds() / float64(b.Rate)
}

// CheckCheckout implements flashsale.Cache. The user's checkout budget,
// when on, is taken in the same script: its key is the sale's (one Redis
// Cluster slot), so the budget is per user and sale.
func (c *Cache) CheckCheckout(ctx context.Context, s *flashsale.Sale, userID string, seq int, newCode string) (string, error) {
	k := c.keys(s.ID)
	keys, args := k.checkout, []any{userID, seq, newCode, s.UserItemLimit, c.expireAt(s)}
	if iv := c.opts.UserCheckouts.interval(); iv > 0 {
		keys = append(keys[:len(keys):len(keys)], k.base+"budget:checkout:"+userID)
		args = append(args, iv, c.opts.UserCheckouts.Burst)
	}
	res, err := c.pipe.run(ctx, checkCheckoutScript, keys, args...).Slice()
	if err != nil {
		return "", unavailable(err)
	}
	status, _ := res[0].(string)
	switch status {
	case "ok":
		code, _ := res[1].(string)
		return code, nil
	case "not_loaded":
		return "", flashsale.ErrNotLoaded
	case flashsale.ERateLimited:
		wait, _ := res[1].(string)
		secs, _ := strconv.ParseFloat(wait, 64)
		return "", &flashsale.Error{Code: flashsale.ERateLimited, Message: "too many requests for this user, retry later",
			Err: flashsale.RetryAfter(max(time.Duration(secs*float64(time.Second)), time.Nanosecond))}
	case flashsale.EItemSold:
		return "", flashsale.Errorf(flashsale.EItemSold, "the item is sold")
	case flashsale.EUserLimit:
		return "", flashsale.Errorf(flashsale.EUserLimit, "at most %d items per user in this sale", s.UserItemLimit)
	}
	return "", fmt.Errorf("check checkout: unexpected reply %v", res)
}

// SetCart implements flashsale.Cache.
func (c *Cache) SetCart(ctx context.Context, s *flashsale.Sale, userID, code string) error {
	k := c.keys(s.ID)
	if err := c.pipe.run(ctx, setCartScript, []string{k.cart, k.codes}, userID, code, c.expireAt(s)).Err(); err != nil {
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
	staged := []string{stage + "sold", stage + "bought", stage + "cart", stage + "codes"}
	pipe := c.c.rdb.Pipeline()
	for _, seq := range st.SoldSeqs {
		pipe.SetBit(ctx, staged[0], int64(seq), 1)
	}
	for user, n := range st.Bought {
		pipe.HSet(ctx, staged[1], user, n)
	}
	for user, code := range st.Open {
		pipe.HSet(ctx, staged[2], user, code)
	}
	for code, user := range st.Codes {
		pipe.HSet(ctx, staged[3], code, user)
	}
	for _, key := range staged {
		// A loader that dies before publishing leaves nothing for long.
		pipe.Expire(ctx, key, 5*time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable(err)
	}
	keys := append([]string{k.ready, k.sold, k.bought, k.cart, k.codes}, staged...)
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

func (c *Cache) missKey(k *saleKeys, client string) string { return k.base + "misses:" + client }

// LockPurchase implements flashsale.Cache.
func (c *Cache) LockPurchase(ctx context.Context, s *flashsale.Sale, code, client string) (string, bool, error) {
	k := c.keys(s.ID)
	token := newToken()
	res, err := c.pipe.run(ctx, lockPurchaseScript, []string{k.codes, c.lockKey(k, code), c.missKey(k, client)},
		code, token, c.opts.PurchaseLockTTL.Milliseconds(), c.opts.CodeMisses).Slice()
	if err != nil {
		c.purchaseLock.attempted(ctx, lockError)
		return "", false, unavailable(err)
	}
	status, _ := res[0].(string)
	known, _ := res[1].(int64)
	switch status {
	case "ok":
		c.purchaseLock.attempted(ctx, "")
		return token, known == 1, nil
	case "busy":
		c.purchaseLock.attempted(ctx, lockContended)
		return "", known == 1, flashsale.Errorf(flashsale.EPurchaseBusy, "this code is being purchased, retry shortly")
	case flashsale.ERateLimited:
		// Not a lock attempt: the code was refused before the lock.
		ms, _ := res[2].(int64)
		return "", false, &flashsale.Error{Code: flashsale.ERateLimited,
			Message: "too many unknown codes from this client, retry later", Err: flashsale.RetryAfter(time.Duration(max(ms, 1000)) * time.Millisecond)}
	}
	return "", false, fmt.Errorf("lock purchase: unexpected reply %v", res)
}

// CountMiss implements flashsale.Cache.
func (c *Cache) CountMiss(ctx context.Context, s *flashsale.Sale, client string) error {
	k := c.keys(s.ID)
	if err := c.pipe.run(ctx, countMissScript, []string{c.missKey(k, client)}, c.opts.MissWindow.Milliseconds()).Err(); err != nil {
		return unavailable(err)
	}
	return nil
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
	if err := c.pipe.run(ctx, completePurchaseScript, []string{k.sold, k.bought, k.cart, k.codes, c.lockKey(k, code)}, args...).Err(); err != nil {
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
