package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
)

// config is a load run's settings, from the command line: the run's, and
// where its report goes.
type config struct {
	loadgen.Config
	JSON     bool   // print the report as JSON
	HTMLFile string // also write an HTML report there
}

// Defaults that depend on the profile: a flash crowd stops when the sale
// sells out, so it may run longer.
const (
	defaultFlashDuration = 2 * time.Minute
	defaultDuration      = 30 * time.Second
	defaultFlashUsers    = 1000
	defaultRealUsers     = 200
)

// parseConfig parses the command line. Errors wrap errUsage, or are
// flag.ErrHelp for -h.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: loadgen [flags]            drive the flashsale service over HTTP and report
       loadgen serve-trivial [flags]   serve a trivial target with the same API shape

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL of the service; several separated by commas spread the requests over instances, round robin")
	fs.StringVar(&c.Profile, "profile", loadgen.ProfileFlash, "load profile: flash, steady, realistic or open")
	fs.IntVar(&c.Users, "users", 0, fmt.Sprintf("flash: users in the crowd (default %d); realistic: simultaneous users (default %d)", defaultFlashUsers, defaultRealUsers))
	fs.IntVar(&c.Concurrency, "concurrency", 32, "steady: closed-loop workers")
	fs.Float64Var(&c.Rate, "rate", 500, "open: checkouts per second, sent on schedule")
	fs.IntVar(&c.MaxInflight, "max-inflight", 512, "open: requests in flight at most")
	fs.DurationVar(&c.Duration, "duration", 0, fmt.Sprintf("how long the load runs at most (default %s for flash, %s otherwise)", defaultFlashDuration, defaultDuration))
	fs.Float64Var(&c.DoubleFire, "double-fire", 0.1, "flash: share of purchases fired twice at once (0 to 1)")
	fs.IntVar(&c.WantMax, "want-max", 14, "flash: each user wants 1 to N items; above the service's limit (10) some users hit it")
	fs.DurationVar(&c.Think, "think", 100*time.Millisecond, "realistic: longest pause between a user's actions")
	fs.Func("sale", "sale id to target (default: the active sale)", func(s string) error {
		_, err := fmt.Sscan(s, &c.SaleID)
		if err == nil && c.SaleID <= 0 {
			err = errors.New("must be positive")
		}
		return err
	})
	fs.BoolVar(&c.CreateSale, "create-sale", false, "create a fresh sale starting now through POST /admin/sales (needs -admin-token)")
	fs.IntVar(&c.Items, "items", 10000, "items of the sale made by -create-sale")
	fs.DurationVar(&c.SaleDuration, "sale-duration", time.Hour, "length of the sale made by -create-sale")
	// The defaults from the environment are applied after parsing, so that
	// -h does not print a secret.
	fs.StringVar(&c.AdminToken, "admin-token", "", "admin bearer token (default $ADMIN_TOKEN)")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL for the invariant check after the load (default $DATABASE_URL; -database-url= : no check)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON (fields: go doc ./cmd/loadgen)")
	fs.StringVar(&c.HTMLFile, "html", "", "also write a self-contained HTML report with charts to `file`")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the generator during the load to `file` (go tool pprof), to see what the generator itself costs")
	fs.BoolVar(&c.Progress, "progress", false, "print a progress line every second even when stderr is not a terminal")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "connections to the target at most (0: one per concurrent request)")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed of item choices and user behaviour (default: from the clock; the report shows it)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["admin-token"] {
		c.AdminToken = getenv("ADMIN_TOKEN")
	}
	if !set["database-url"] {
		c.DatabaseURL = getenv("DATABASE_URL")
	}
	if !set["seed"] {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Duration == 0 {
		c.Duration = defaultDuration
		if c.Profile == loadgen.ProfileFlash {
			c.Duration = defaultFlashDuration
		}
	}
	if c.Users == 0 {
		c.Users = defaultRealUsers
		if c.Profile == loadgen.ProfileFlash {
			c.Users = defaultFlashUsers
		}
	}
	c.Targets = nil
	for t := range strings.SplitSeq(c.Target, ",") {
		c.Targets = append(c.Targets, strings.TrimRight(strings.TrimSpace(t), "/"))
	}
	c.Target = strings.Join(c.Targets, ",")
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	return c, nil
}

func (c config) validate() error {
	for _, t := range c.Targets {
		if u, err := url.Parse(t); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("-target %q: want an http(s) URL, or several separated by commas", t)
		}
	}
	switch {
	case len(c.Targets) == 0:
		return errors.New("-target: want an http(s) URL")
	case c.Profile != loadgen.ProfileFlash && c.Profile != loadgen.ProfileSteady && c.Profile != loadgen.ProfileRealistic && c.Profile != loadgen.ProfileOpen:
		return fmt.Errorf("-profile %q: want flash, steady, realistic or open", c.Profile)
	case c.Users < 1:
		return errors.New("-users must be positive")
	case c.Concurrency < 1:
		return errors.New("-concurrency must be positive")
	case c.Rate <= 0:
		return errors.New("-rate must be positive")
	case c.MaxInflight < 1:
		return errors.New("-max-inflight must be positive")
	case c.Duration < 0:
		return errors.New("-duration must be positive")
	case c.DoubleFire < 0 || c.DoubleFire > 1:
		return errors.New("-double-fire must be between 0 and 1")
	case c.WantMax < 1:
		return errors.New("-want-max must be positive")
	case c.Think < 0:
		return errors.New("-think must not be negative")
	case c.CreateSale && c.AdminToken == "":
		return errors.New("-create-sale needs -admin-token (or $ADMIN_TOKEN)")
	case c.CreateSale && c.SaleID != 0:
		return errors.New("-create-sale and -sale exclude each other")
	case c.CreateSale && c.Items < 1:
		return errors.New("-items must be positive")
	case c.Timeout <= 0:
		return errors.New("-timeout must be positive")
	case c.MaxConns < 0:
		return errors.New("-max-conns must not be negative")
	}
	return nil
}
