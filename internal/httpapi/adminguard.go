package httpapi

import (
	"sync"
	"time"
)

// Budget of failed admin authentications: at most adminFailureLimit per
// client address in each adminFailureWindow. Once it is spent, every admin
// request from that address, with the right token or not, is refused with
// 429 until the window ends, so that guessing goes no faster than the budget.
const (
	adminFailureLimit  = 10
	adminFailureWindow = time.Minute
	// adminFailureAddrs bounds the addresses counted in one window; past it,
	// new addresses share one budget (overflowAddr), so that an attacker
	// with many addresses grows no memory.
	adminFailureAddrs = 10_000
	overflowAddr      = "overflow"
)

// adminGuard counts failed admin authentications per client address in
// fixed windows, in the process: it holds whatever Redis's state and whether
// the abuse limits are on, and costs no round trip. Each instance keeps its
// own counts, so a client reaching n instances gets n budgets.
type adminGuard struct {
	now func() time.Time // time.Now; a test's clock

	mu     sync.Mutex
	start  time.Time      // of the current window
	counts map[string]int // failures by address in the current window
}

func newAdminGuard() *adminGuard {
	return &adminGuard{now: time.Now, counts: make(map[string]int)}
}

// roll starts a new window when the current one has ended. g.mu is held.
func (g *adminGuard) roll(now time.Time) {
	if now.Sub(g.start) >= adminFailureWindow {
		g.start = now
		clear(g.counts)
	}
}

// key is addr, or overflowAddr when the window counts too many addresses
// already. g.mu is held.
func (g *adminGuard) key(addr string) string {
	if _, ok := g.counts[addr]; ok || len(g.counts) < adminFailureAddrs {
		return addr
	}
	return overflowAddr
}

// blocked returns how long addr must wait before its admin requests are
// considered again, or 0 when they are.
func (g *adminGuard) blocked(addr string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.roll(now)
	if g.counts[g.key(addr)] < adminFailureLimit {
		return 0
	}
	return g.start.Add(adminFailureWindow).Sub(now)
}

// fail counts a failed authentication from addr and reports whether it spent
// the address's budget.
func (g *adminGuard) fail(addr string) (spent bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(g.now())
	k := g.key(addr)
	g.counts[k]++
	return g.counts[k] == adminFailureLimit
}
