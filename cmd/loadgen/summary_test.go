package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/loadgen"
)

func TestMedianSkipsMissingFigures(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want string
	}{
		{[]float64{3, 1, 2}, "2.00"},
		{[]float64{4, 1, 3, 2}, "2.50"},
		{[]float64{none, 5, 1}, "3.00"},
		{[]float64{none}, "–"},
		{nil, "–"},
	} {
		if got := f2(median(tc.in)); got != tc.want {
			t.Errorf("median(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestFigureFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{f0(1234567.4), "1,234,567"},
		{f0(999.5), "1,000"},
		{f0(-20826), "-20,826"},
		{f1(53.45), "53.5"}, // 53.45 is 53.4500000000000028… in binary
		{f2(0.125), "0.12"}, // an exact half rounds to even, as Python's format does
		{f2(none), "–"},
		{pct(1), "100.0 %"},
		{spct(-0.179), "-17.9 %"},
		{spct(0.063), "+6.3 %"},
		{runsOf([]float64{8386, none, 7546}, f0), "8,386 / – / 7,546"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// benchDir writes a run directory as scripts/bench.sh leaves it: meta.json,
// runs.jsonl and one report per run (none for a nil report).
type benchDir struct {
	t    *testing.T
	dir  string
	runs []map[string]any
}

func newBenchDir(t *testing.T) *benchDir {
	return &benchDir{t: t, dir: t.TempDir()}
}

// run adds one run of a benchmark's variant in a round, with its reports
// (nil: the generator left none) and its CPU ticks (100 a second).
func (d *benchDir) run(bench, variant string, round int, wall float64, ticks map[string]float64, reps ...*loadgen.Report) map[string]any {
	var paths []string
	var rcs []int
	for i, rep := range reps {
		p := fmt.Sprintf("runs/%s-r%d-%s-%d.json", bench, round, variant, i)
		paths = append(paths, p)
		rcs = append(rcs, 0)
		if rep == nil {
			rcs[i] = 1
			continue
		}
		raw, err := json.Marshal(rep)
		if err != nil {
			d.t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(d.dir, "runs"), 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.dir, p), raw, 0o644); err != nil {
			d.t.Fatal(err)
		}
	}
	r := map[string]any{
		"bench": bench, "variant": variant, "round": round, "instances": 1, "wall_s": wall,
		"reports": paths, "rcs": rcs, "loadgen_times": []string{"0m1.500s 0m0.500s"},
		"ticks": ticks, "rss": map[string]float64{"before_kb": 20480, "max_sampled_kb": 40960, "hwm_kb": 51200},
		"commands": []string{"bin/loadgen -profile steady"},
	}
	d.runs = append(d.runs, r)
	return r
}

// summary writes the directory and returns loadgen summarize's output.
func (d *benchDir) summary() string {
	d.t.Helper()
	meta := map[string]any{
		"date": "2026-12-04 16:31 UTC", "commit": "abc1234", "root": "/src", "out": ".dev/bench/x",
		"invocation": "scripts/bench.sh", "clk_tck": 100,
		"machine":  map[string]string{"nproc": "2"},
		"settings": map[string]string{"REPEATS": "2", "TELEMETRY_MODES": "full off", "SCALE_FLASH": "1"},
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "meta.json"), raw, 0o644); err != nil {
		d.t.Fatal(err)
	}
	var lines bytes.Buffer
	for _, r := range d.runs {
		raw, err := json.Marshal(r)
		if err != nil {
			d.t.Fatal(err)
		}
		lines.Write(append(raw, '\n'))
	}
	if err := os.WriteFile(filepath.Join(d.dir, "runs.jsonl"), lines.Bytes(), 0o644); err != nil {
		d.t.Fatal(err)
	}
	var out bytes.Buffer
	if err := summarize([]string{d.dir}, &out); err != nil {
		d.t.Fatal(err)
	}
	return out.String()
}

// steadyReport is a report whose checkouts ran at rps with the given p99,
// all answered 200.
func steadyReport(rps, p99 float64) *loadgen.Report {
	n := int64(rps * 10)
	return &loadgen.Report{
		Profile: loadgen.ProfileSteady, DurationSeconds: 10, Result: loadgen.ResultPass,
		Endpoints: []loadgen.EndpointReport{{
			Endpoint: checkoutEndpoint, Requests: n, RPS: rps,
			Latency: loadgen.Latency{P50: p99 / 2, P99: p99}, Statuses: map[string]int64{"200": n},
		}},
	}
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l+"\n") {
			t.Errorf("summary lacks the line\n%s\nin\n%s", l, out)
		}
	}
}

// TestSummaryThroughputAgainstTrivial: medians over the rounds, and the
// ratio to the trivial target taken round by round before its median.
func TestSummaryThroughputAgainstTrivial(t *testing.T) {
	d := newBenchDir(t)
	cpu := map[string]float64{"target": 500, "machine_busy": 1800, "machine_total": 2000}
	d.run("b1", "service", 1, 10, cpu, steadyReport(1000, 50))
	d.run("b1", "trivial", 1, 10, cpu, steadyReport(4000, 10))
	d.run("b1", "service", 2, 10, cpu, steadyReport(3000, 40))
	d.run("b1", "trivial", 2, 10, cpu, steadyReport(5000, 20))
	out := d.summary()
	wantLines(t, out,
		"| service | 2,000 | 1,000 / 3,000 | 22.5 | 45.0 | 50.0 / 40.0 | 100.0 % |",
		"| trivial | 4,500 | 4,000 / 5,000 | 7.5 | 15.0 | 10.0 / 20.0 | 100.0 % |",
		// rounds 0.25 and 0.60: median 0.425, not 2,000 / 4,500 = 0.44
		"Service / trivial throughput: **0.42** (median of per-round ratios: 0.25 / 0.60); p99 ratio 3.5× (5.0 / 2.0).",
		// 2 s of generator CPU in 10 s; 5 s of the target's
		"In the trivial runs the generator used 0.20 cores and the trivial target 0.50 (of 2): that ceiling is the generator's and the kernel's, not net/http's.",
	)
	// CPU per 1,000 checkouts: 5 s for 10,000 and 30,000 checkouts.
	wantLines(t, out, "| the service (trivial target in the trivial runs) | 0.33 | 0.50 / 0.17 | 0.50 | 0.11 | 0.50 |")
}

// TestSummaryTelemetryAgainstOff: each mode against off in the same round.
func TestSummaryTelemetryAgainstOff(t *testing.T) {
	d := newBenchDir(t)
	cpu := map[string]float64{"target": 100}
	full := d.run("b2", "full", 1, 10, cpu, steadyReport(900, 55))
	full["sink"] = map[string]sinkSignal{"traces": {Requests: 10, Bytes: 2e6}, "metrics": {Requests: 2, Bytes: 5e5}}
	d.run("b2", "off", 1, 10, cpu, steadyReport(1000, 50))
	out := d.summary()
	wantLines(t, out,
		"| full | 900 | 900 | 55.0 | 55.0 | -10.0 % (-10.0 %) | +10.0 % | 0.11 | 12, 2.5 | 0.00 |",
		"| off | 1,000 | 1,000 | 50.0 | 50.0 | — | — | 0.10 | – | – |",
	)
}

// TestSummaryOpenLoopKnee: the knee lies between the last rate sustained
// and the first one not; a later rate does not move it.
func TestSummaryOpenLoopKnee(t *testing.T) {
	d := newBenchDir(t)
	open := func(rate, achieved float64, late int64) *loadgen.Report {
		r := steadyReport(achieved, 20)
		r.Profile = loadgen.ProfileOpen
		r.OpenLoop = &loadgen.OpenLoopReport{Rate: rate, Scheduled: int64(rate * 10), Late: late}
		return r
	}
	d.run("b6", "100", 1, 10, nil, open(100, 100, 0))
	d.run("b6", "1000", 1, 10, nil, open(1000, 999, 5))
	d.run("b6", "2000", 1, 10, nil, open(2000, 1500, 2000)) // 10 % late
	d.run("b6", "3000", 1, 10, nil, open(3000, 3000, 0))    // after the knee: ignored
	out := d.summary()
	wantLines(t, out,
		"The knee lies between **1,000/s** (sustained: achieved ≥ 97 % of the rate, ≤ 1 % sent late, p99 ≤ 100 ms, medians) and **2,000/s** (not).")
	if i, j := strings.Index(out, "| 100 |"), strings.Index(out, "| 2,000 |"); i < 0 || j < i {
		t.Errorf("rates not in numeric order:\n%s", out)
	}
}

// TestSummaryFlashAndFailures: the flash table's medians, and a run whose
// generator left no report listed as not passed.
func TestSummaryFlashAndFailures(t *testing.T) {
	d := newBenchDir(t)
	flash := func(sellOut, p99 float64) *loadgen.Report {
		r := steadyReport(500, p99)
		r.Profile, r.EndedBy, r.TimeToSellOutSeconds = loadgen.ProfileFlash, "sold_out", &sellOut
		r.Sale = loadgen.SaleReport{TotalItems: 100, ItemsSold: 100}
		r.Invariants = &loadgen.InvariantsReport{Result: loadgen.ResultPass}
		return r
	}
	d.run("b3", "flash", 1, 10, nil, flash(7, 800))
	d.run("b3", "flash", 2, 10, nil, flash(8, 600))
	d.run("b3", "flash", 3, 10, nil, nil)
	out := d.summary()
	wantLines(t, out,
		"| 1 | 7.00 | 10.00 | sold_out | 100/100 | 800.0 | – | – | 0 | PASS | PASS |",
		"| 3 | – | – | – | – | – | – | – | – | – | ERROR (no report) |",
		"| **median** | **7.50** | | | | **700.0** | **–** | | | | |",
		"| **median** | | **40** | **50** |",
		"### Runs that did not pass",
		"- `runs/b3-r3-flash-0.json`: loadgen exit 1 — no report",
	)
}

func TestSummarizeUsage(t *testing.T) {
	if err := summarize(nil, &bytes.Buffer{}); !errors.Is(err, errUsage) {
		t.Errorf("no directory: %v, want a usage error", err)
	}
	if err := summarize([]string{t.TempDir()}, &bytes.Buffer{}); err == nil {
		t.Error("a directory without meta.json: no error")
	}
}

// TestSummaryScaling: several generators' checkouts add up, their sell-out
// is the latest one's, and each instance count is compared with the first.
func TestSummaryScaling(t *testing.T) {
	d := newBenchDir(t)
	flash := func(sellOut float64) *loadgen.Report {
		r := steadyReport(100, 10)
		r.TimeToSellOutSeconds = &sellOut
		r.Invariants = &loadgen.InvariantsReport{Result: loadgen.ResultPass}
		return r
	}
	d.run("b5", "steady-1", 1, 10, nil, steadyReport(1000, 40))
	d.run("b5", "flash-1", 1, 10, nil, flash(3))
	d.run("b5", "steady-2", 1, 10, nil, steadyReport(600, 50), steadyReport(300, 70))["instances"] = 2
	d.run("b5", "flash-2", 1, 10, nil, flash(4), flash(5))["instances"] = 2
	out := d.summary()
	wantLines(t, out,
		"| 1 | 1,000 | 1,000 | — | 40.0 | 100.0 % | 3.00 | 3.00 | PASS | 0 |",
		"| 2 | 900 | 900 | 0.90× | 70.0 | 100.0 % | 5.00 | 5.00 | PASS | 0 |",
	)
}
