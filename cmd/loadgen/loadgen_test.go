package main

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// TestFlashSellsOut sends a crowd at a fresh sale on the real service: it
// sells out, and every guarantee holds in PostgreSQL.
func TestFlashSellsOut(t *testing.T) {
	svc := mustService(t)
	htmlFile := filepath.Join(t.TempDir(), "flash.html")
	profFile := filepath.Join(t.TempDir(), "loadgen.prof")
	r := mustRun(t, false, "-target", svc.URL, "-profile", "flash", "-users", "150", "-create-sale", "-items", "200",
		"-admin-token", testAdminToken, "-database-url", svc.DatabaseURL, "-duration", "45s", "-seed", "1",
		"-html", htmlFile, "-cpuprofile", profFile)

	if r.Result != loadgen.ResultPass || !r.SoldOut || r.EndedBy != "sold_out" {
		t.Errorf("result %s, sold out %v, ended by %s; failures %q", r.Result, r.SoldOut, r.EndedBy, r.Failures)
	}
	if !r.Sale.Created || r.Sale.TotalItems != 200 || r.Sale.ItemsSold != 200 || r.ItemsSoldByRun != 200 {
		t.Errorf("sale %+v, %d sold by the run", r.Sale, r.ItemsSoldByRun)
	}
	if tt := r.TimeToSellOutSeconds; tt == nil || *tt <= 0 || *tt > r.DurationSeconds+0.5 {
		t.Errorf("time to sell out %v of a %.2fs load", tt, r.DurationSeconds)
	}
	if inv := r.Invariants; inv == nil || inv.Result != loadgen.ResultPass || inv.Check.SoldItems != 200 || inv.Check.Purchases != 200 {
		t.Errorf("invariants %+v", inv)
	}
	for _, ep := range []loadgen.Endpoint{loadgen.EndpointCheckout, loadgen.EndpointPurchase} {
		if e := endpointOf(t, r, ep); e.Statuses["200"] == 0 {
			t.Errorf("%s: no 200 among %v", ep, e.Statuses)
		}
	}
	// With more demand than items, some checkouts find their item sold.
	if e := endpointOf(t, r, loadgen.EndpointCheckout); e.Errors["item_sold"] == 0 {
		t.Errorf("no item_sold among checkout errors %v", e.Errors)
	}
	if r.DoubleFires == 0 || r.Totals.ServerErrors != 0 || len(r.ClientViolations) != 0 {
		t.Errorf("%d double fires, %d server errors, client violations %q", r.DoubleFires, r.Totals.ServerErrors, r.ClientViolations)
	}
	last := -1
	for _, s := range r.Timeline {
		if s.ItemsSold != nil {
			last = *s.ItemsSold
		}
	}
	if last != 200 {
		t.Errorf("the timeline's last items sold is %d, want 200", last)
	}
	checkHTML(t, htmlFile)
	// The generator's own CPU profile: a gzip-compressed pprof protobuf.
	if raw, err := os.ReadFile(profFile); err != nil || len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		t.Errorf("-cpuprofile wrote no profile (%d bytes, %v)", len(raw), err)
	}
}

// checkHTML checks that the HTML report is there, has charts, and needs
// nothing from the network.
func checkHTML(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	if !strings.Contains(page, "<svg") || strings.Count(page, "<polyline") < 3 {
		t.Errorf("HTML report has no charts:\n%.2000s", page)
	}
	asset := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import|<link\b|<script[^>]+src`)
	if m := asset.FindString(page); m != "" {
		t.Errorf("HTML report loads an external asset: %q", m)
	}
}

// TestHTMLReport renders a report without a service: charts are there and
// nothing is loaded from the network.
func TestHTMLReport(t *testing.T) {
	sold := []int{0, 40, 100}
	r := &loadgen.Report{Profile: loadgen.ProfileFlash, Target: "http://127.0.0.1:1", Result: loadgen.ResultFail, Failures: []string{"<b>x</b>"},
		Sale: loadgen.SaleReport{ID: 7, TotalItems: 100, ItemsSold: 100}}
	for i := range 3 {
		r.Timeline = append(r.Timeline, loadgen.Second{T: i, Requests: map[string]int64{string(loadgen.EndpointCheckout): int64(10 * i)},
			P50Ms: map[string]float64{string(loadgen.EndpointCheckout): 1.5}, P99Ms: map[string]float64{string(loadgen.EndpointCheckout): 9}, ItemsSold: &sold[i]})
	}
	r.Endpoints = []loadgen.EndpointReport{{Endpoint: string(loadgen.EndpointCheckout), Requests: 30, Statuses: map[string]int64{"200": 30}}}
	path := filepath.Join(t.TempDir(), "r.html")
	if err := loadgen.WriteHTMLFile(path, r); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, path)
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "<b>x</b>") {
		t.Error("a failure was not escaped")
	}
}

// TestSteadyAndOpen runs the closed-loop and the open-loop checkout profiles
// briefly against the real service.
func TestSteadyAndOpen(t *testing.T) {
	svc := mustService(t)
	t.Run("steady", func(t *testing.T) {
		r := mustRun(t, false, "-target", svc.URL, "-profile", "steady", "-concurrency", "8", "-duration", "2s",
			"-database-url", svc.DatabaseURL)
		e := endpointOf(t, r, loadgen.EndpointCheckout)
		if r.Result != loadgen.ResultPass || r.EndedBy != "duration" || e.Statuses["200"] == 0 || e.Statuses["200"] != e.Requests {
			t.Errorf("result %s, ended by %s, checkout statuses %v of %d, failures %q", r.Result, r.EndedBy, e.Statuses, e.Requests, r.Failures)
		}
		if r.Sale.ItemsSold != 0 || r.OpenLoop != nil || r.Invariants == nil || r.Invariants.Result != loadgen.ResultPass {
			t.Errorf("sold %d, open loop %+v, invariants %+v", r.Sale.ItemsSold, r.OpenLoop, r.Invariants)
		}
	})
	t.Run("open", func(t *testing.T) {
		r := mustRun(t, false, "-target", svc.URL, "-profile", "open", "-rate", "100", "-max-inflight", "32", "-duration", "2s")
		o := r.OpenLoop
		if o == nil {
			t.Fatal("no open_loop in the report")
		}
		if o.Scheduled < 190 || o.Scheduled > 201 || o.Sent+o.Unsent != o.Scheduled || o.Sent != endpointOf(t, r, loadgen.EndpointCheckout).Requests {
			t.Errorf("open loop %+v, %d checkouts", o, endpointOf(t, r, loadgen.EndpointCheckout).Requests)
		}
		if r.Result != loadgen.ResultPass || r.Invariants != nil {
			t.Errorf("result %s, invariants %+v, failures %q", r.Result, r.Invariants, r.Failures)
		}
	})
}

// TestRealistic runs the realistic persona mix briefly: shoppers browse, check out and
// purchase.
func TestRealistic(t *testing.T) {
	svc := mustService(t)
	r := mustRun(t, false, "-target", svc.URL, "-profile", "realistic", "-users", "40", "-think", "20ms", "-duration", "2s",
		"-database-url", svc.DatabaseURL)
	if r.Result != loadgen.ResultPass {
		t.Errorf("result %s: %q", r.Result, r.Failures)
	}
	items, checkout := endpointOf(t, r, loadgen.EndpointItems), endpointOf(t, r, loadgen.EndpointCheckout)
	if items.Statuses["200"] == 0 || checkout.Statuses["200"] == 0 || items.Requests <= checkout.Requests {
		t.Errorf("items %v, checkout %v: every visit browses, not every visit checks out", items.Statuses, checkout.Statuses)
	}
	if purchase := endpointOf(t, r, loadgen.EndpointPurchase); purchase.Statuses["200"] == 0 || r.ItemsSoldByRun == 0 {
		t.Errorf("purchases %v, %d items sold", purchase.Statuses, r.ItemsSoldByRun)
	}
	if inv := r.Invariants; inv == nil || inv.Result != loadgen.ResultPass || inv.Check.SoldItems != r.Sale.ItemsSold {
		t.Errorf("invariants %+v, sale %+v", inv, r.Sale)
	}
}

// TestInvariantViolationFailsRun breaks the sale's counter in the database:
// the run reports the violation and fails.
func TestInvariantViolationFailsRun(t *testing.T) {
	svc := mustService(t)
	db, err := sql.Open("pgx", svc.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(),
		`UPDATE sales SET items_sold = 1 WHERE id = (SELECT max(id) FROM sales WHERE started_at <= now())`); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr testenv.Buffer
	err = run(context.Background(), []string{"-target", svc.URL, "-profile", "steady", "-concurrency", "2", "-duration", "300ms",
		"-database-url", svc.DatabaseURL}, noEnv, &stdout, &stderr)
	if !errors.Is(err, errFailed) {
		t.Fatalf("err = %v, want errFailed\n%s", err, stdout.String())
	}
	for _, want := range []string{"invariants: FAIL", "violation: counts disagree: sales.items_sold=1, sold items=0", "result: FAIL"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestTrivialTarget runs steady and open against serve-trivial, the ceiling
// the service is compared with.
func TestTrivialTarget(t *testing.T) {
	url := startTrivial(t, 500)
	r := mustRun(t, false, "-target", url, "-profile", "steady", "-concurrency", "8", "-duration", "1s")
	if e := endpointOf(t, r, loadgen.EndpointCheckout); e.Statuses["200"] != e.Requests || r.Sale.TotalItems != 500 {
		t.Errorf("checkout statuses %v of %d requests; sale %+v", e.Statuses, e.Requests, r.Sale)
	}
	r = mustRun(t, false, "-target", url, "-profile", "open", "-rate", "200", "-duration", "1s")
	// 200 a second for a second are due; how many are sent before the run
	// ends depends on the machine's load.
	if o := r.OpenLoop; o.Scheduled < 200 || o.Sent == 0 {
		t.Errorf("open loop %+v", o)
	}
	// The trivial target answers items pages like the service.
	page, res := loadgen.NewClient(loadgen.NewHTTPClient(1, 0, 5*time.Second), url).Items(context.Background(), r.Sale.ID, 450, 100)
	if !res.OK() || len(page) != 50 || page[0].ID != r.Sale.ID*1_000_000+451 {
		t.Errorf("items page: %s, %d items", res, len(page))
	}
}
