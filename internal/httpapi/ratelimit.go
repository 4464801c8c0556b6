package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/realclientip/realclientip-go"

	"github.com/flashsale/flashsale/internal/flashsale"
)

// Limiter keeps request budgets that every instance of the service shares
// (internal/redis.RateLimiter keeps them in Redis).
type Limiter interface {
	// Allow takes one request from key's budget of rate requests per period
	// with bursts of burst. It returns 0 when the request may proceed, else
	// how long until the next one may; an error when it could not decide.
	Allow(ctx context.Context, key string, rate, burst int, period time.Duration) (retryAfter time.Duration, err error)
}

// Limit is a budget of Rate requests per Period (a second when zero) with
// bursts of up to Burst. A Rate of 0 turns the limit off.
type Limit struct {
	Rate, Burst int
	Period      time.Duration
}

// ParseLimitRate parses a rate "N" or "N/s" (per second), "N/m" or "N/h".
func ParseLimitRate(s string) (Limit, error) {
	n, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	periods := map[string]time.Duration{"": time.Second, "s": time.Second, "m": time.Minute, "h": time.Hour}
	period, ok := periods[unit]
	rate, err := strconv.Atoi(n)
	if !ok || err != nil || rate < 0 || rate > 1_000_000 {
		return Limit{}, fmt.Errorf("rate %q: want N, N/s, N/m or N/h with N between 0 and 1000000", s)
	}
	return Limit{Rate: rate, Period: period}, nil
}

func (l Limit) period() time.Duration {
	if l.Period <= 0 {
		return time.Second
	}
	return l.Period
}

func (l Limit) on() bool { return l.Rate > 0 }

// RateLimits are the abuse limits of POST /checkout and POST /purchase:
// User per code (purchase), Addr per client address over both. A refused
// request answers 429 and is not passed to the service; when the Limiter
// fails, requests pass (PostgreSQL keeps the sale's guarantees, not the
// limits). A user's checkout budget is the service's (its cache takes it
// with the checkout's other checks, in one Redis round trip); a checkout it
// refuses is counted as RefusedUserRate here.
type RateLimits struct {
	Limiter    Limiter
	User, Addr Limit
	// TrustedProxies are the proxies whose X-Forwarded-For is believed: its
	// right-most address that is not one of them is the client's.
	TrustedProxies []net.IPNet
}

// limits are RateLimits as requests use them.
type limits struct {
	RateLimits
	on          bool                  // any limit is on
	xff         realclientip.Strategy // nil without trusted proxies
	log         *slog.Logger
	lastWarning atomic.Int64 // unix nanoseconds of the last failure warning
}

// newLimits checks rl and prepares it for requests.
func newLimits(rl RateLimits, log *slog.Logger) (*limits, error) {
	for _, l := range []Limit{rl.User, rl.Addr} {
		if l.on() && l.Burst < 1 {
			return nil, fmt.Errorf("httpapi: rate limit %d per %s needs a burst of at least 1", l.Rate, l.period())
		}
	}
	lim := &limits{RateLimits: rl, on: rl.Limiter != nil && (rl.User.on() || rl.Addr.on()), log: log}
	if len(rl.TrustedProxies) > 0 {
		s, err := realclientip.NewRightmostTrustedRangeStrategy("X-Forwarded-For", rl.TrustedProxies)
		if err != nil {
			return nil, fmt.Errorf("httpapi: trusted proxies: %w", err)
		}
		lim.xff = s
	}
	return lim, nil
}

// ParseTrustedProxies parses a comma-separated list of addresses and CIDR
// ranges ("10.0.0.0/8, 192.0.2.7").
func ParseTrustedProxies(s string) ([]net.IPNet, error) {
	var ranges []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			ranges = append(ranges, f)
		}
	}
	return realclientip.AddressesAndRangesToIPNets(ranges...)
}

// check takes one request from the budgets of the client's address and of
// key (a code's), in that order: ERateLimited with the wait when either is spent.
func (rl *limits) check(ctx context.Context, r *http.Request, userKey string) error {
	if err := rl.checkAddr(ctx, r); err != nil {
		return err
	}
	return rl.checkUser(ctx, userKey)
}

// checkAddr takes one request from the budget of the client's address.
func (rl *limits) checkAddr(ctx context.Context, r *http.Request) error {
	if !rl.on || !rl.Addr.on() {
		return nil
	}
	if addr := rl.clientAddr(r); addr != "" {
		return rl.take(ctx, "addr:"+addr, rl.Addr, "too many requests from this address")
	}
	return nil
}

// checkUser takes one request from userKey's budget.
func (rl *limits) checkUser(ctx context.Context, userKey string) error {
	if !rl.on || !rl.User.on() {
		return nil
	}
	return rl.take(ctx, userKey, rl.User, "too many requests for this user")
}

// take draws one request from key's budget.
func (rl *limits) take(ctx context.Context, key string, l Limit, message string) error {
	wait, err := rl.Limiter.Allow(ctx, key, l.Rate, l.Burst, l.period())
	if err != nil {
		rl.warn(ctx, err)
		return nil // fail open
	}
	if wait > 0 {
		return &flashsale.Error{Code: flashsale.ERateLimited, Message: message + ", retry later", Err: flashsale.RetryAfter(wait)}
	}
	return nil
}

// warn logs a limiter failure, at most once every 10 seconds.
func (rl *limits) warn(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := rl.lastWarning.Load()
	if now-last < int64(10*time.Second) || !rl.lastWarning.CompareAndSwap(last, now) {
		return
	}
	rl.log.WarnContext(ctx, "rate limiter unavailable, requests pass unchecked", slog.String("err", err.Error()))
}

// clientAddr is the key of the request's client address: the IPv4 address,
// or the /64 of an IPv6 address (one subscriber's block); "" when there is
// none (a Unix socket).
func (rl *limits) clientAddr(r *http.Request) string {
	ip := realclientip.RemoteAddrStrategy{}.ClientIP(nil, r.RemoteAddr)
	if rl.xff != nil && ip != "" && rl.trusted(ip) {
		if fwd := rl.xff.ClientIP(r.Header, r.RemoteAddr); fwd != "" {
			ip = fwd
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// trusted reports whether ip is one of the trusted proxies.
func (rl *limits) trusted(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	nip := net.IP(a.Unmap().WithZone("").AsSlice())
	for _, n := range rl.TrustedProxies {
		if n.Contains(nip) {
			return true
		}
	}
	return false
}
