package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Results of the run and of the invariant check.
const (
	ResultPass  = "PASS"
	ResultFail  = "FAIL"
	ResultError = "ERROR"
)

// Report is what a run measured. Its JSON (loadgen -json) is documented in
// cmd/loadgen/doc.go; field names are stable.
type Report struct {
	Profile              string            `json:"profile"`
	Target               string            `json:"target"`
	RunID                string            `json:"run_id"`
	Settings             Settings          `json:"settings"`
	Sale                 SaleReport        `json:"sale"`
	StartedAt            time.Time         `json:"started_at"`
	DurationSeconds      float64           `json:"duration_seconds"`
	EndedBy              string            `json:"ended_by"`
	Totals               Totals            `json:"totals"`
	Endpoints            []EndpointReport  `json:"endpoints"`
	ItemsSoldByRun       int               `json:"items_sold_by_run"`
	SoldOut              bool              `json:"sold_out"`
	TimeToSellOutSeconds *float64          `json:"time_to_sell_out_seconds"`
	DoubleFires          int               `json:"double_fires"`
	OpenLoop             *OpenLoopReport   `json:"open_loop"`
	ClientViolations     []string          `json:"client_violations"`
	Invariants           *InvariantsReport `json:"invariants"`
	Timeline             []Second          `json:"timeline"`
	Result               string            `json:"result"`
	Failures             []string          `json:"failures"`
}

// Settings are the flags the run used (secrets left out).
type Settings struct {
	Users           int     `json:"users"`
	Concurrency     int     `json:"concurrency"`
	Rate            float64 `json:"rate"`
	MaxInflight     int     `json:"max_inflight"`
	DurationSeconds float64 `json:"duration_seconds"`
	DoubleFire      float64 `json:"double_fire"`
	WantMax         int     `json:"want_max"`
	ThinkMs         float64 `json:"think_ms"`
	TimeoutSeconds  float64 `json:"timeout_seconds"`
	MaxConns        int     `json:"max_conns"`
	Seed            uint64  `json:"seed"`
}

// SaleReport is the sale the run loaded.
type SaleReport struct {
	ID              int64     `json:"id"`
	Created         bool      `json:"created"` // by -create-sale
	StartedAt       time.Time `json:"started_at"`
	EndedAt         time.Time `json:"ended_at"`
	TotalItems      int       `json:"total_items"`
	ItemsSoldBefore int       `json:"items_sold_before"`
	ItemsSold       int       `json:"items_sold"` // after the run, as GET /sales/{id} says
}

// EndpointReport is one endpoint's share of the run.
type EndpointReport struct {
	Endpoint string           `json:"endpoint"`
	Requests int64            `json:"requests"`
	RPS      float64          `json:"rps"`
	Latency  Latency          `json:"latency_ms"`
	Statuses map[string]int64 `json:"statuses"` // HTTP status -> answers; requests without an answer are not here
	Errors   map[string]int64 `json:"errors"`   // the JSON "error" code, or timeout, transport, invalid_response -> requests
}

// Latency holds percentiles of a latency distribution, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Second is one second of the run's timeline: the requests that completed in
// it, by endpoint.
type Second struct {
	T         int                `json:"t"` // seconds since the start
	Requests  map[string]int64   `json:"requests"`
	Errors    int64              `json:"errors"` // 5xx and requests without an answer
	P50Ms     map[string]float64 `json:"p50_ms"`
	P99Ms     map[string]float64 `json:"p99_ms"`
	ItemsSold *int               `json:"items_sold"` // as last read in this second; null when not read
}

// report measures the finished run: ctx bounds the final reading of the sale
// and the invariant check.
func (lr *loadRun) report(ctx context.Context, created bool, elapsed time.Duration) *Report {
	cfg := lr.cfg
	sold, doubleFires, violations := lr.ledger.state()
	finalSold := lr.finalSold(ctx, lr.sale.ItemsSold+sold)
	eps, timeline := lr.rec.summary(elapsed)
	r := &Report{
		Profile: cfg.Profile,
		Target:  cfg.Target,
		RunID:   lr.runID,
		Settings: Settings{
			Users: cfg.Users, Concurrency: cfg.Concurrency, Rate: cfg.Rate, MaxInflight: cfg.MaxInflight,
			DurationSeconds: cfg.Duration.Seconds(), DoubleFire: cfg.DoubleFire, WantMax: cfg.WantMax,
			ThinkMs: ms(cfg.Think), TimeoutSeconds: cfg.Timeout.Seconds(), MaxConns: cfg.MaxConns, Seed: cfg.Seed,
		},
		Sale: SaleReport{
			ID: lr.sale.ID, Created: created, StartedAt: lr.sale.StartedAt, EndedAt: lr.sale.EndedAt,
			TotalItems: lr.sale.TotalItems, ItemsSoldBefore: lr.sale.ItemsSold, ItemsSold: lr.soldSoFar(),
		},
		StartedAt:        lr.rec.start,
		DurationSeconds:  elapsed.Seconds(),
		EndedBy:          lr.endedBy(),
		Totals:           lr.rec.counts(),
		Endpoints:        eps,
		ItemsSoldByRun:   sold,
		DoubleFires:      doubleFires,
		OpenLoop:         lr.open,
		ClientViolations: violations,
		Timeline:         timeline,
		Failures:         []string{},
	}
	if s := elapsed.Seconds(); s > 0 {
		r.Totals.RPS = float64(r.Totals.Requests) / s
	}
	if finalSold >= 0 {
		r.Sale.ItemsSold = finalSold
	}
	r.SoldOut = r.Sale.ItemsSold >= r.Sale.TotalItems
	if at := lr.lastSold(); !at.IsZero() {
		// The run's own purchases sold the sale's last item: that moment,
		// not the service's count read some time after.
		t := at.Sub(lr.rec.firstRequest()).Seconds()
		r.TimeToSellOutSeconds = &t
	} else if lr.watch != nil {
		if _, at := lr.watch.state(); !at.IsZero() {
			t := at.Sub(lr.rec.firstRequest()).Seconds()
			r.TimeToSellOutSeconds = &t
		}
	}
	if cfg.DatabaseURL != "" {
		r.Invariants = checkInvariants(ctx, cfg.DatabaseURL, lr.sale.ID)
	}

	if n := r.Totals.ServerErrors; n > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("the service answered %d 5xx other than 503", n))
	}
	if n := len(r.ClientViolations); n > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d guarantees broken as the client saw them", n))
	}
	if inv := r.Invariants; inv != nil && inv.Result != ResultPass {
		if inv.Error != "" {
			r.Failures = append(r.Failures, "invariant check could not run: "+inv.Error)
		} else {
			r.Failures = append(r.Failures, fmt.Sprintf("invariant check failed: %d violations", len(inv.Check.Violations)))
		}
	}
	r.Result = ResultPass
	if len(r.Failures) > 0 {
		r.Result = ResultFail
	}
	return r
}

// WriteReport prints the report as JSON or as text.
func WriteReport(w io.Writer, r *Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return writeText(w, r)
}

func writeText(w io.Writer, r *Report) error {
	var b strings.Builder
	created := ""
	if r.Sale.Created {
		created = ", created"
	}
	fmt.Fprintf(&b, "loadgen %s against %s, sale %d (%d items%s), run %s\n",
		r.Profile, r.Target, r.Sale.ID, r.Sale.TotalItems, created, r.RunID)
	fmt.Fprintf(&b, "settings: %s\n", r.settingsLine())
	fmt.Fprintf(&b, "load: %.2fs, ended by %s; %d requests, %.1f req/s\n\n", r.DurationSeconds, r.EndedBy, r.Totals.Requests, r.Totals.RPS)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "endpoint\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	for _, e := range r.Endpoints {
		l := e.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", e.Endpoint, e.Requests, e.RPS, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	tw.Flush()

	b.WriteString("\nanswers:\n")
	for _, e := range r.Endpoints {
		fmt.Fprintf(&b, "  %-22s %s", e.Endpoint, countsLine(e.Statuses))
		if len(e.Errors) > 0 {
			fmt.Fprintf(&b, "; errors %s", countsLine(e.Errors))
		}
		b.WriteString("\n")
	}
	t := r.Totals
	fmt.Fprintf(&b, "  total: %d ok, %d rejected (4xx), %d unavailable (503), %d server errors (other 5xx), %d without an answer\n\n",
		t.OK, t.Rejected, t.Unavailable, t.ServerErrors, t.NoAnswer)

	fmt.Fprintf(&b, "items sold: %d of %d (%d before the run; %d reported by this run's purchases)\n",
		r.Sale.ItemsSold, r.Sale.TotalItems, r.Sale.ItemsSoldBefore, r.ItemsSoldByRun)
	switch {
	case r.TimeToSellOutSeconds != nil:
		fmt.Fprintf(&b, "time to sell out: %.2fs\n", *r.TimeToSellOutSeconds)
	case r.SoldOut:
		b.WriteString("time to sell out: sold out, not observed during the load\n")
	default:
		b.WriteString("time to sell out: not sold out\n")
	}
	if r.Profile == ProfileFlash {
		fmt.Fprintf(&b, "double-fired purchases: %d\n", r.DoubleFires)
	}
	if o := r.OpenLoop; o != nil {
		fmt.Fprintf(&b, "open loop: %.0f/s asked, %d due, %d sent, %d late (> %.0f ms behind schedule), %d never sent; max send lag %.1f ms\n",
			o.Rate, o.Scheduled, o.Sent, o.Late, o.LateAfterMs, o.Unsent, o.MaxSendLagMs)
	}
	for _, v := range r.ClientViolations {
		fmt.Fprintf(&b, "client-side violation: %s\n", v)
	}
	switch inv := r.Invariants; {
	case inv == nil:
		b.WriteString("invariants: not checked (no -database-url)\n")
	case inv.Error != "":
		fmt.Fprintf(&b, "invariants: %s: %s\n", inv.Result, inv.Error)
	default:
		c := inv.Check
		fmt.Fprintf(&b, "invariants: %s (sales.items_sold=%d, sold items=%d, purchases=%d, buyers=%d, limit %d)\n",
			inv.Result, c.ItemsSold, c.SoldItems, c.Purchases, c.Buyers, c.UserItemLimit)
		for _, v := range c.Violations {
			fmt.Fprintf(&b, "  violation: %s\n", v)
		}
	}
	fmt.Fprintf(&b, "result: %s\n", r.Result)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "  failure: %s\n", f)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// settingsLine names the settings the profile uses.
func (r *Report) settingsLine() string {
	s := r.Settings
	var parts []string
	switch r.Profile {
	case ProfileFlash:
		parts = append(parts, fmt.Sprintf("users=%d want-max=%d double-fire=%.2f", s.Users, s.WantMax, s.DoubleFire))
	case ProfileSteady:
		parts = append(parts, fmt.Sprintf("concurrency=%d", s.Concurrency))
	case ProfileRealistic:
		parts = append(parts, fmt.Sprintf("users=%d think=%.0fms", s.Users, s.ThinkMs))
	case ProfileOpen:
		parts = append(parts, fmt.Sprintf("rate=%.0f/s max-inflight=%d", s.Rate, s.MaxInflight))
	}
	parts = append(parts, fmt.Sprintf("duration=%gs timeout=%gs seed=%d", s.DurationSeconds, s.TimeoutSeconds, s.Seed))
	return strings.Join(parts, " ")
}

// countsLine prints counts as "k1: n1, k2: n2" in key order.
func countsLine(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func itoa(n int) string { return strconv.Itoa(n) }

// finalSold reads the sale's items_sold after the load (-1 when it cannot)
// and puts it on the timeline. The service answers GET /sales/{id} from a
// reading up to a second old, so an answer behind what the load saw sold
// (want) is read again for up to two seconds.
func (lr *loadRun) finalSold(ctx context.Context, want int) int {
	sold := -1
	deadline := time.Now().Add(2 * time.Second)
	for {
		if s, res := lr.c.Observed(nil).Sale(ctx, lr.sale.ID); res.OK() {
			sold = s.ItemsSold
			lr.rec.observeSold(time.Now(), sold)
		}
		if sold >= want || time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			return sold
		}
	}
}
