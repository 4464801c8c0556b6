package loadgen

import "time"

// The load profiles.
const (
	ProfileFlash     = "flash"
	ProfileSteady    = "steady"
	ProfileRealistic = "realistic"
	ProfileOpen      = "open"
)

// Config is a load run's settings: cmd/loadgen reads them from its flags,
// whose names the comments give.
type Config struct {
	Target  string   // as given: one URL, or several separated by commas
	Targets []string // the URLs of Target: requests are spread over them
	Profile string

	Users       int           // flash: the crowd; realistic: simultaneous users
	Concurrency int           // steady: closed-loop workers
	Rate        float64       // open: checkouts per second
	MaxInflight int           // open: requests in flight at most
	Duration    time.Duration // how long the load runs at most
	DoubleFire  float64       // flash: share of purchases fired twice at once
	WantMax     int           // flash: each user wants 1 to WantMax items
	Think       time.Duration // realistic: longest pause between a user's actions

	SaleID       int64 // 0: the active sale
	CreateSale   bool
	Items        int
	SaleDuration time.Duration
	AdminToken   string

	DatabaseURL string // "": no invariant check after the load
	CPUProfile  string // file for a CPU profile of the generator, "" for none
	Progress    bool   // print a progress line every second even when not on a terminal
	Timeout     time.Duration
	MaxConns    int
	Seed        uint64
}

// conns is how many requests the profile may have in flight at once: the
// client keeps that many idle connections so that none is closed and
// reopened between requests.
func (c Config) conns() int {
	switch c.Profile {
	case ProfileSteady:
		return c.Concurrency
	case ProfileOpen:
		return c.MaxInflight
	case ProfileFlash:
		return 2 * c.Users // double-fired purchases and the sale watcher
	}
	return c.Users + 1
}
