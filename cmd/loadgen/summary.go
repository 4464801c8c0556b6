package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/flashsale/flashsale/internal/loadgen"
)

// A bench run directory (scripts/bench.sh) holds meta.json, the machine and
// the settings; runs.jsonl, one line per measured run (the loadgen -json
// reports it wrote under runs/, the CPU ticks, memory and database counts the
// script took around it); and the reports. summarize prints the Markdown
// summary of that directory.

// benchMeta is meta.json.
type benchMeta struct {
	Date       string            `json:"date"`
	Commit     string            `json:"commit"`
	Root       string            `json:"root"`
	Out        string            `json:"out"`
	Invocation string            `json:"invocation"`
	ClkTck     float64           `json:"clk_tck"`
	Machine    benchMachine      `json:"machine"`
	ServiceEnv []string          `json:"service_env"`
	Settings   map[string]string `json:"settings"`
	Elapsed    string            `json:"elapsed"`
	LoadAfter  string            `json:"load_after"`
}

type benchMachine struct {
	Nproc      string `json:"nproc"`
	CPUModel   string `json:"cpu_model"`
	Mem        string `json:"mem"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Postgres   string `json:"postgres"`
	Redis      string `json:"redis"`
	LoadBefore string `json:"load_before"`
}

// benchRun is one line of runs.jsonl: one measured run of a benchmark's
// variant in one round, with one loadgen report per instance under test.
type benchRun struct {
	Bench        string             `json:"bench"` // b1 … b6
	Variant      string             `json:"variant"`
	Round        int                `json:"round"`
	Instances    int                `json:"instances"`
	WallS        float64            `json:"wall_s"`
	Reports      []string           `json:"reports"`       // paths relative to the directory
	RCs          []int              `json:"rcs"`           // loadgen exit statuses
	LoadgenTimes []string           `json:"loadgen_times"` // the `times` line of each loadgen's children
	Ticks        map[string]float64 `json:"ticks"`         // CPU clock ticks during the run, by process group
	RSS          struct {
		BeforeKB     float64 `json:"before_kb"`
		MaxSampledKB float64 `json:"max_sampled_kb"`
		HWMKB        float64 `json:"hwm_kb"`
	} `json:"rss"`
	DBBefore *dbCounts             `json:"db_before"`
	DBAfter  *dbCounts             `json:"db_after"`
	Sink     map[string]sinkSignal `json:"sink"` // the OTLP sink's /stats, by signal
	Commands []string              `json:"commands"`
	reps     []*loadgen.Report     // the reports, nil where missing or unreadable
}

type dbCounts struct {
	Attempts   float64 `json:"attempts"`
	XactCommit float64 `json:"xact_commit"`
}

type sinkSignal struct {
	Requests float64 `json:"requests"`
	Bytes    float64 `json:"bytes"`
}

// none marks a figure that could not be computed; it prints as "–" and
// medians skip it.
var none = math.NaN()

func isNone(x float64) bool { return math.IsNaN(x) }

func ptrOr(p *float64, dflt float64) float64 {
	if p == nil {
		return dflt
	}
	return *p
}

// summarize is "loadgen summarize DIR".
func summarize(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: loadgen summarize DIR (a scripts/bench.sh output directory)", errUsage)
	}
	s, err := readBench(args[0])
	if err != nil {
		return err
	}
	var b bytes.Buffer
	s.w = &b
	s.write()
	_, err = stdout.Write(b.Bytes())
	return err
}

type benchSummary struct {
	meta benchMeta
	runs []*benchRun
	w    io.Writer
}

func readBench(dir string) (*benchSummary, error) {
	s := &benchSummary{}
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &s.meta); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "runs.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		r := &benchRun{}
		if err := json.Unmarshal(sc.Bytes(), r); err != nil {
			return nil, fmt.Errorf("runs.jsonl: %w", err)
		}
		for _, p := range r.Reports {
			r.reps = append(r.reps, readReport(filepath.Join(dir, p)))
		}
		s.runs = append(s.runs, r)
	}
	return s, sc.Err()
}

// readReport is nil when the report is missing or not JSON (loadgen failed).
func readReport(path string) *loadgen.Report {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var r *loadgen.Report
	if json.Unmarshal(raw, &r) != nil {
		return nil
	}
	return r
}

// ------------------------------------------------------------ figures of a run

func reportEndpoint(r *loadgen.Report, name string) *loadgen.EndpointReport {
	if r == nil {
		return nil
	}
	for i := range r.Endpoints {
		if r.Endpoints[i].Endpoint == name {
			return &r.Endpoints[i]
		}
	}
	return nil
}

const checkoutEndpoint = "POST /checkout"

// checkoutFigures are a run's checkouts, summed over its reports.
type checkoutFigures struct {
	rps, requests float64
	p50, p99      float64 // the worst report's
	ok            float64 // share answered 200
}

// checkout is nil when a report or its checkouts are missing.
func (r *benchRun) checkout() *checkoutFigures {
	if len(r.reps) == 0 {
		return nil
	}
	c := &checkoutFigures{}
	var ok float64
	for _, x := range r.reps {
		e := reportEndpoint(x, checkoutEndpoint)
		if e == nil {
			return nil
		}
		c.rps += e.RPS
		c.requests += float64(e.Requests)
		c.p50 = math.Max(c.p50, e.Latency.P50)
		c.p99 = math.Max(c.p99, e.Latency.P99)
		ok += float64(e.Statuses["200"])
	}
	c.ok = none
	if c.requests > 0 {
		c.ok = ok / c.requests
	}
	return c
}

var timesField = regexp.MustCompile(`(\d+)m([\d.]+)s`)

// loadgenCPU sums the user and system seconds of the run's generators, from
// the `times` lines the script kept ("0m1.234s 0m0.567s").
func (r *benchRun) loadgenCPU() float64 {
	t := 0.0
	for _, s := range r.LoadgenTimes {
		m := timesField.FindAllStringSubmatch(s, -1)
		if len(m) != 2 {
			return none
		}
		for _, f := range m {
			minutes, _ := strconv.Atoi(f[1])
			seconds, _ := strconv.ParseFloat(f[2], 64)
			t += float64(minutes)*60 + seconds
		}
	}
	return t
}

// cpu is the CPU seconds of each process group during the run: target (the
// process under test), pg_db, pg_cluster, redis, sink, machine_busy,
// machine_total, loadgen and other (busy time no listed process accounts for).
func (s *benchSummary) cpu(r *benchRun) map[string]float64 {
	c := map[string]float64{}
	for _, k := range []string{"target", "pg_db", "pg_cluster", "redis", "sink", "machine_busy", "machine_total"} {
		c[k] = r.Ticks[k] / s.meta.ClkTck
	}
	c["loadgen"] = r.loadgenCPU()
	c["other"] = c["machine_busy"] - c["target"] - c["pg_cluster"] - c["redis"] - c["sink"] - c["loadgen"]
	return c
}

func (r *benchRun) failed() bool {
	return slices.ContainsFunc(r.RCs, func(rc int) bool { return rc != 0 }) || slices.Contains(r.reps, nil)
}

// rounds are the runs of one benchmark, by variant, then by round.
type rounds map[string]map[int]*benchRun

func (s *benchSummary) by(bench string) rounds {
	d := rounds{}
	for _, r := range s.runs {
		if r.Bench != bench {
			continue
		}
		if d[r.Variant] == nil {
			d[r.Variant] = map[int]*benchRun{}
		}
		d[r.Variant][r.Round] = r
	}
	return d
}

// runs are a variant's runs in round order.
func (d rounds) runs(variant string) []*benchRun {
	m := d[variant]
	out := make([]*benchRun, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// checkouts are the runs' checkout figures, those missing left out.
func checkouts(rs []*benchRun) []*checkoutFigures {
	var out []*checkoutFigures
	for _, r := range rs {
		if c := r.checkout(); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// sideBySide pairs the checkout figures of the rounds both variants ran, in
// round order, where both have them: per-round ratios come from these pairs.
func sideBySide(a, b map[int]*benchRun) [][2]*checkoutFigures {
	var pairs [][2]*checkoutFigures
	for _, k := range slices.Sorted(maps.Keys(a)) {
		rb, both := b[k]
		if !both {
			continue
		}
		if ca, cb := a[k].checkout(), rb.checkout(); ca != nil && cb != nil {
			pairs = append(pairs, [2]*checkoutFigures{ca, cb})
		}
	}
	return pairs
}

func pick(cs []*checkoutFigures, f func(*checkoutFigures) float64) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		out[i] = f(c)
	}
	return out
}

func rps(c *checkoutFigures) float64 { return c.rps }
func p50(c *checkoutFigures) float64 { return c.p50 }
func p99(c *checkoutFigures) float64 { return c.p99 }
func ok(c *checkoutFigures) float64  { return c.ok }

// dbDelta is the attempt rows the run wrote and the rows per committed
// transaction; ok is false without both readings.
func (r *benchRun) dbDelta() (rows, perTx float64, ok bool) {
	a, b := r.DBBefore, r.DBAfter
	if a == nil || b == nil {
		return 0, 0, false
	}
	rows = b.Attempts - a.Attempts
	return rows, rows / math.Max(1, b.XactCommit-a.XactCommit), true
}

// ------------------------------------------------------------ numbers

// median skips figures that are none; none when nothing is left.
func median(xs []float64) float64 {
	xs = slices.DeleteFunc(slices.Clone(xs), isNone)
	if len(xs) == 0 {
		return none
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// grouped formats x with prec decimals and commas between thousands.
func grouped(x float64, prec int) string {
	if isNone(x) {
		return "–"
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	sign, s := "", s
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, d := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return sign + b.String()
}

func f0(x float64) string { return grouped(x, 0) }
func f1(x float64) string { return grouped(x, 1) }
func f2(x float64) string { return grouped(x, 2) }

func pct(x float64) string {
	if isNone(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*x)
}

func spct(x float64) string {
	if isNone(x) {
		return "–"
	}
	return fmt.Sprintf("%+.1f %%", 100*x)
}

// runsOf lists every run's figure: "1 / 2 / 3".
func runsOf(xs []float64, f func(float64) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return strings.Join(parts, " / ")
}

// ------------------------------------------------------------ the summary

func (s *benchSummary) p(format string, args ...any) {
	fmt.Fprintf(s.w, format+"\n", args...)
}

// heading starts a section of the summary.
func (s *benchSummary) heading(title string) {
	s.p("### %s", title)
	s.p("")
}

// row prints a row of a Markdown table.
func (s *benchSummary) row(cells ...string) {
	s.p("| %s |", strings.Join(cells, " | "))
}

// table prints the head of a Markdown table.
func (s *benchSummary) table(head ...string) {
	s.row(head...)
	s.p("|%s", strings.Repeat("---|", len(head)))
}

func (s *benchSummary) write() {
	m, S := s.meta, s.meta.Settings
	or := func(v, dflt string) string {
		if v == "" {
			return dflt
		}
		return v
	}
	s.p("## Load benchmarks — %s, commit %s", m.Date, m.Commit)
	s.p("")
	mc := m.Machine
	s.p("Machine: %s CPUs (%s), %s RAM, %s, kernel %s; %s; %s; Redis %s. Load average before: %s; after: %s. Run took %s (`%s`).",
		mc.Nproc, mc.CPUModel, mc.Mem, mc.OS, mc.Kernel, mc.Go, mc.Postgres, mc.Redis, mc.LoadBefore,
		or(m.LoadAfter, "?"), or(m.Elapsed, "?"), m.Invocation)
	s.p("")
	s.p("Everything shares the machine: the generator (`bin/loadgen`), the service, PostgreSQL " +
		"(fsync on) and Redis, plus whatever else was running (the *other* CPU below). " +
		"Every comparison ran its variants interleaved, the order rotating each round, " +
		S["REPEATS"] + " rounds; each service start had a fresh database and Redis key prefix. " +
		"Figures are medians, with every run listed (run 1 / 2 / 3 …). Raw reports: " +
		"`" + m.Out + "` (not committed).")
	if len(m.ServiceEnv) > 0 {
		env := make([]string, len(m.ServiceEnv))
		for i, e := range m.ServiceEnv {
			env[i] = "`" + e + "`"
		}
		s.p("")
		s.p("Service tuning from the environment: %s.", strings.Join(env, ", "))
	}
	s.p("")
	b1, b3 := s.by("b1"), s.by("b3")
	s.throughput(b1)
	s.telemetry(s.by("b2"))
	s.flash(b3)
	s.resources(b1, b3)
	s.scaling(s.by("b5"))
	s.openLoop(s.by("b6"))
	s.failures()
	s.commands()
}

// throughput is benchmark 1: the service vs the trivial target.
func (s *benchSummary) throughput(b1 rounds) {
	if len(b1) == 0 {
		return
	}
	S := s.meta.Settings
	s.heading("1. Checkout throughput: the service vs a trivial target")
	s.p("Steady profile (closed loop, fresh users, random unsold items, nothing purchased), "+
		"%s concurrent clients, %s per run, sale of %s items. "+
		"*trivial* is `loadgen serve-trivial`: the same HTTP shape answered from memory, the ceiling of "+
		"net/http and the generator on this machine. The service runs with its default telemetry "+
		"(OTel metrics served to Prometheus, no OTLP export).", S["CONNS"], S["DURATION"], S["STEADY_ITEMS"])
	s.p("")
	s.table("target", "checkouts/s (median)", "runs", "p50 ms", "p99 ms (median)", "p99 runs", "200 answers")
	for _, v := range []string{"service", "trivial"} {
		cs := checkouts(b1.runs(v))
		if len(cs) == 0 {
			continue
		}
		s.row(v, f0(median(pick(cs, rps))), runsOf(pick(cs, rps), f0),
			f1(median(pick(cs, p50))), f1(median(pick(cs, p99))), runsOf(pick(cs, p99), f1), pct(median(pick(cs, ok))))
	}
	var ratios, p99r []float64
	for _, ab := range sideBySide(b1["service"], b1["trivial"]) {
		if a, b := ab[0], ab[1]; b.rps != 0 {
			ratios = append(ratios, a.rps/b.rps)
			r := none
			if b.p99 != 0 {
				r = a.p99 / b.p99
			}
			p99r = append(p99r, r)
		}
	}
	s.p("")
	if len(ratios) == 0 {
		return
	}
	s.p("Service / trivial throughput: **%.2f** (median of per-round ratios: %s); p99 ratio %s× (%s).",
		median(ratios), runsOf(ratios, f2), f1(median(p99r)), runsOf(p99r, f1))
	var lg, tg []float64
	for _, r := range b1.runs("trivial") {
		c := s.cpu(r)
		lg = append(lg, c["loadgen"]/r.WallS)
		tg = append(tg, c["target"]/r.WallS)
	}
	if lgc := median(lg); !isNone(lgc) {
		s.p("In the trivial runs the generator used %s cores and the trivial target %s "+
			"(of %s): that ceiling is the generator's and the kernel's, not net/http's.", f2(lgc), f2(median(tg)), s.meta.Machine.Nproc)
	}
	s.p("")
}

// telemetry is benchmark 2: the same load in each telemetry mode.
func (s *benchSummary) telemetry(b2 rounds) {
	if len(b2) == 0 {
		return
	}
	S := s.meta.Settings
	metrics := ""
	if _, ok := b2["metrics"]; ok {
		metrics = "; *metrics* = the defaults (OTel metrics on /metrics, no OTLP)"
	}
	s.heading("2. Telemetry overhead under load")
	s.p("The steady checkout load of benchmark 1 (%s clients, %s), the service "+
		"started in each mode: *full* = OTel metrics + every request traced "+
		"(`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, arg 1.0), traces and metrics exported over "+
		"OTLP/HTTP to a discarding sink (`scripts/otlpsink`, on this machine too; its CPU is shown); "+
		"*ratio001* = the same with arg 0.01; *off* = `OTEL_SDK_DISABLED=true`%s"+
		". OTLP modes push metrics every %s ms (the default 60 s would not fire "+
		"within a run); the batch span processor keeps its defaults (queue 2048, batches of 512: spans "+
		"beyond the queue are dropped, as in production).", S["CONNS"], S["DURATION"], metrics, S["METRIC_EXPORT_MS"])
	s.p("")
	s.table("mode", "checkouts/s (median)", "runs", "p99 ms (median)", "p99 runs", "throughput vs off",
		"p99 vs off", "service CPU s / 1,000 checkouts", "OTLP received (requests, MB)", "sink cores")
	for _, mode := range strings.Fields(S["TELEMETRY_MODES"]) {
		if _, ok := b2[mode]; !ok {
			continue
		}
		rs := b2.runs(mode)
		var vs, p99vs, cpuK, sinkCores, sinkReqs, sinkMB []float64
		for _, ab := range sideBySide(b2[mode], b2["off"]) {
			vs = append(vs, ab[0].rps/ab[1].rps-1)
			p99vs = append(p99vs, ab[0].p99/ab[1].p99-1)
		}
		for _, r := range rs {
			if c := r.checkout(); c != nil && c.requests != 0 {
				cpuK = append(cpuK, s.cpu(r)["target"]/(c.requests/1000))
			}
			sinkCores = append(sinkCores, s.cpu(r)["sink"]/r.WallS)
			if len(r.Sink) > 0 {
				var req, by float64
				for _, sig := range r.Sink {
					req += sig.Requests
					by += sig.Bytes
				}
				sinkReqs = append(sinkReqs, req)
				sinkMB = append(sinkMB, by/1e6)
			}
		}
		otlp, sinkCPU := "–", none
		if len(sinkReqs) > 0 {
			otlp = f0(median(sinkReqs)) + ", " + f1(median(sinkMB))
			sinkCPU = median(sinkCores)
		}
		vsOff, p99Off := "—", "—"
		if mode != "off" {
			vsOff = spct(median(vs)) + " (" + runsOf(vs, spct) + ")"
			p99Off = spct(median(p99vs))
		}
		cs := checkouts(rs)
		s.row(mode, f0(median(pick(cs, rps))), runsOf(pick(cs, rps), f0),
			f1(median(pick(cs, p99))), runsOf(pick(cs, p99), f1), vsOff, p99Off, f2(median(cpuK)), otlp, f2(sinkCPU))
	}
	s.p("")
	s.p("Throughput and p99 vs off are medians of per-round ratios (same round, side by side).")
	s.p("")
}

// flash is benchmark 3: one row per flash crowd.
func (s *benchSummary) flash(b3 rounds) {
	if len(b3) == 0 {
		return
	}
	S := s.meta.Settings
	s.heading("3. Flash sale")
	s.p("`-profile flash -users %s -create-sale -items %s` "+
		"(each user wants 1–14 items, checks out unsold ones and purchases, 10 %% of purchases "+
		"fired twice), invariants checked in PostgreSQL after the load.", S["FLASH_USERS"], S["FLASH_ITEMS"])
	s.p("")
	s.table("run", "time to sell out s", "load s", "ended by", "items sold", "checkout p99 ms",
		"purchase p99 ms", "purchases/s", "5xx + no answer", "invariants", "result")
	var tts, cp, pp []float64
	for _, r := range b3.runs("flash") {
		x := r.reps[0]
		if x == nil {
			s.row(strconv.Itoa(r.Round), "–", "–", "–", "–", "–", "–", "–", "–", "–", "ERROR (no report)")
			continue
		}
		t, c, p := ptrOr(x.TimeToSellOutSeconds, none), none, none
		if e := reportEndpoint(x, checkoutEndpoint); e != nil {
			c = e.Latency.P99
		}
		purchases := "–"
		if e := reportEndpoint(x, "POST /purchase"); e != nil {
			p = e.Latency.P99
			purchases = f0(e.RPS)
		}
		tts, cp, pp = append(tts, t), append(cp, c), append(pp, p)
		inv := "–"
		if x.Invariants != nil {
			inv = x.Invariants.Result
		}
		s.row(strconv.Itoa(r.Round), f2(t), f2(x.DurationSeconds), x.EndedBy, fmt.Sprintf("%d/%d", x.Sale.ItemsSold, x.Sale.TotalItems),
			f1(c), f1(p), purchases, strconv.FormatInt(x.Totals.ServerErrors+x.Totals.NoAnswer, 10), inv, x.Result)
	}
	s.p("| **median** | **%s** | | | | **%s** | **%s** | | | | |", f2(median(tts)), f1(median(cp)), f1(median(pp)))
	s.p("")
}

// resources is benchmark 4: memory in the flash crowds, CPU per checkout.
func (s *benchSummary) resources(b1, b3 rounds) {
	if len(b1) == 0 && len(b3) == 0 {
		return
	}
	s.heading("4. Resources")
	fl := b3.runs("flash")
	if len(b3) > 0 {
		s.p("Service memory during the flash crowds of benchmark 3 (VmRSS sampled every 100 ms; VmHWM is " +
			"the kernel's peak since the start):")
		s.p("")
		s.table("run", "RSS before the load MiB", "peak sampled RSS MiB", "VmHWM MiB")
		var pk, hw []float64
		for _, r := range fl {
			pk, hw = append(pk, r.RSS.MaxSampledKB/1024), append(hw, r.RSS.HWMKB/1024)
			s.row(strconv.Itoa(r.Round), f0(r.RSS.BeforeKB/1024), f0(pk[len(pk)-1]), f0(hw[len(hw)-1]))
		}
		s.p("| **median** | | **%s** | **%s** |", f0(median(pk)), f0(median(hw)))
		s.p("")
	}
	rows := []struct{ key, label string }{
		{"target", "the service (trivial target in the trivial runs)"},
		{"pg_db", "PostgreSQL: backends of the run's database"},
		{"pg_cluster", "PostgreSQL: whole server (backends, WAL writer, checkpointer, other databases)"},
		{"redis", "Redis (whole server)"},
		{"loadgen", "load generator"},
		{"other", "everything else on the machine"},
		{"machine_busy", "**machine, all CPUs busy**"},
	}
	// cols: each process group's CPU seconds per 1,000 checkouts (perK) or
	// cores busy, run by run.
	cols := func(rs []*benchRun, perK bool) map[string][]float64 {
		res := map[string][]float64{}
		for _, r := range rs {
			c, ch := s.cpu(r), r.checkout()
			for _, row := range rows {
				v := c[row.key]
				switch {
				case !perK:
					v /= r.WallS
				case ch != nil && ch.requests != 0:
					v /= ch.requests / 1000
				default:
					v = none
				}
				res[row.key] = append(res[row.key], v)
			}
		}
		return res
	}
	svc, tri := b1.runs("service"), b1.runs("trivial")
	s.p("Where the CPU goes. CPU seconds (utime + stime from /proc, before/after each run; the "+
		"generator's from its own `times`) per 1,000 checkouts in benchmark 1's runs, and the average "+
		"number of cores busy during them (of %s); *other* is the machine's busy time "+
		"minus the processes listed (other sessions on this shared machine, the kernel, sampling).", s.meta.Machine.Nproc)
	s.p("")
	head := []string{"process"}
	if len(svc) > 0 {
		head = append(head, "service run: CPU s / 1,000 checkouts", "runs", "cores")
	}
	if len(tri) > 0 {
		head = append(head, "trivial run: CPU s / 1,000 checkouts", "cores")
	}
	if len(fl) > 0 {
		head = append(head, "flash crowd (bench. 3): cores")
	}
	s.table(head...)
	csK, csC := cols(svc, true), cols(svc, false)
	ctK, ctC := cols(tri, true), cols(tri, false)
	cfC := cols(fl, false)
	for _, row := range rows {
		k, cells := row.key, []string{row.label}
		if len(svc) > 0 {
			cells = append(cells, f2(median(csK[k])), runsOf(csK[k], f2), f2(median(csC[k])))
		}
		switch {
		case len(tri) == 0:
		case k == "pg_db": // the trivial target has no database
			cells = append(cells, "–", "–")
		default:
			cells = append(cells, f2(median(ctK[k])), f2(median(ctC[k])))
		}
		if len(fl) > 0 {
			cells = append(cells, f2(median(cfC[k])))
		}
		s.row(cells...)
	}
	s.p("")
	var written, perTx []float64
	for _, r := range svc {
		if rows, tx, ok := r.dbDelta(); ok {
			written, perTx = append(written, rows), append(perTx, tx)
		}
	}
	if len(written) > 0 {
		s.p("PostgreSQL in the service runs: %s attempt rows "+
			"written per run (median), about %s rows per committed transaction of the database "+
			"(group commit; the transaction count also holds reads).", f0(median(written)), f0(median(perTx)))
		s.p("")
	}
}

// scaling is benchmark 5: steady load and a flash crowd over 1…n instances.
func (s *benchSummary) scaling(b5 rounds) {
	if len(b5) == 0 {
		return
	}
	S := s.meta.Settings
	var ns []int
	for _, r := range s.runs {
		if r.Bench == "b5" && !slices.Contains(ns, r.Instances) {
			ns = append(ns, r.Instances)
		}
	}
	slices.Sort(ns)
	s.heading("5. Scaling over instances")
	flash := "no flash crowd (SCALE_FLASH=0)."
	if S["SCALE_FLASH"] == "1" {
		flash = fmt.Sprintf("a flash crowd of %s users split across the instances on one sale of "+
			"%s items (`-sale`), each generator checking the invariants at its end.", S["FLASH_USERS"], S["FLASH_ITEMS"])
	}
	s.p("1…%d instances on the same database and Redis (different ports), one generator per "+
		"instance run in parallel (loadgen takes one `-target`): steady checkouts for %s "+
		"with the %s clients split across the instances, summed; then %s", ns[len(ns)-1], S["SCALE_DURATION"], S["CONNS"], flash)
	s.p("")
	s.table("instances", "checkouts/s (median)", "runs", "vs 1 instance", "p99 ms (worst generator, median)",
		"200 answers", "flash: time to sell out s (median)", "runs", "flash invariants", "5xx + no answer")
	first := fmt.Sprintf("steady-%d", ns[0])
	for _, n := range ns {
		steady, flashKey := fmt.Sprintf("steady-%d", n), fmt.Sprintf("flash-%d", n)
		cs := checkouts(b5.runs(steady))
		vsFirst := "—"
		if n != ns[0] {
			var vs []float64
			for _, ab := range sideBySide(b5[steady], b5[first]) {
				vs = append(vs, ab[0].rps/ab[1].rps)
			}
			vsFirst = f2(median(vs)) + "×"
		}
		// With several generators, the flash crowd sold out when the latest
		// of them saw it.
		var tt []float64
		var invs []string
		bad := int64(0)
		for _, r := range b5.runs(flashKey) {
			var ts []float64
			for _, x := range r.reps {
				res := loadgen.ResultError
				if x != nil {
					ts = append(ts, ptrOr(x.TimeToSellOutSeconds, none))
					bad += x.Totals.ServerErrors + x.Totals.NoAnswer
					if x.Invariants != nil {
						res = x.Invariants.Result
					}
				}
				invs = append(invs, res)
			}
			t := none
			if len(ts) > 0 && !slices.ContainsFunc(ts, isNone) {
				t = slices.Max(ts)
			}
			tt = append(tt, t)
		}
		inv := "–"
		if len(invs) > 0 {
			inv = loadgen.ResultPass
			if slices.ContainsFunc(invs, func(i string) bool { return i != loadgen.ResultPass }) {
				inv = "FAIL (" + strings.Join(invs, ", ") + ")"
			}
		}
		sellOut, sellOutRuns, badS := "–", "–", "–"
		if len(b5[flashKey]) > 0 {
			sellOut, sellOutRuns, badS = f2(median(tt)), runsOf(tt, f2), strconv.FormatInt(bad, 10)
		}
		s.row(strconv.Itoa(n), f0(median(pick(cs, rps))), runsOf(pick(cs, rps), f0),
			vsFirst, f1(median(pick(cs, p99))), pct(median(pick(cs, ok))), sellOut, sellOutRuns, inv, badS)
	}
	s.p("")
	s.p("Flash time to sell out with several generators is the latest of theirs (they start together).")
	s.p("")
}

// openLoop is benchmark 6: fixed arrival rates, and the knee between the
// highest rate sustained and the first one not.
func (s *benchSummary) openLoop(b6 rounds) {
	if len(b6) == 0 {
		return
	}
	S := s.meta.Settings
	rates := slices.SortedFunc(maps.Keys(b6), func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	s.heading("6. Open loop: checkout attempts per second one PostgreSQL absorbs")
	s.p("`-profile open` for %s per run, at most %s in flight, "+
		"fresh users and unsold items: every checkout is accepted and its attempt row is group-committed "+
		"before the answer. loadgen.Latency counts from each request's intended send time. Late = sent more "+
		"than 10 ms after its time (no free slot, or the generator fell behind). The generator, the "+
		"service, PostgreSQL and Redis share the machine's cores, so the knee is where the machine, not "+
		"PostgreSQL alone, runs out.", S["OPEN_DURATION"], S["OPEN_MAX_INFLIGHT"])
	s.p("")
	s.table("rate/s", "achieved/s (median)", "runs", "200 answers", "late", "unsent", "p50 ms",
		"p99 ms (median)", "p99 runs", "attempt rows/s", "rows per DB transaction",
		"cores: service / PG / Redis / loadgen / other", "machine busy")
	knee, firstBad := 0, 0
	for _, rate := range rates {
		rateN, _ := strconv.Atoi(rate)
		rs := b6.runs(rate)
		cs := checkouts(rs)
		var late, unsent, rowsS, perTx, busy []float64
		cores := map[string][]float64{}
		for _, r := range rs {
			x := r.reps[0]
			if x != nil && x.OpenLoop != nil {
				if o := x.OpenLoop; o.Scheduled != 0 {
					late = append(late, float64(o.Late)/float64(o.Scheduled))
				}
				unsent = append(unsent, float64(x.OpenLoop.Unsent))
			}
			if rows, tx, ok := r.dbDelta(); ok && x != nil {
				rowsS, perTx = append(rowsS, rows/x.DurationSeconds), append(perTx, tx)
			}
			c := s.cpu(r)
			for _, k := range []string{"target", "pg_cluster", "redis", "loadgen", "other"} {
				cores[k] = append(cores[k], c[k]/r.WallS)
			}
			if c["machine_total"] != 0 {
				busy = append(busy, c["machine_busy"]/c["machine_total"])
			}
		}
		ach, lateM, p99M := median(pick(cs, rps)), median(late), median(pick(cs, p99))
		s.row(f0(float64(rateN)), f0(ach), runsOf(pick(cs, rps), f0), pct(median(pick(cs, ok))), pct(lateM), f0(median(unsent)),
			f1(median(pick(cs, p50))), f1(p99M), runsOf(pick(cs, p99), f1), f0(median(rowsS)), f0(median(perTx)),
			strings.Join([]string{f2(median(cores["target"])), f2(median(cores["pg_cluster"])), f2(median(cores["redis"])),
				f2(median(cores["loadgen"])), f2(median(cores["other"]))}, " / "), pct(median(busy)))
		sustained := !isNone(ach) && !isNone(lateM) && ach >= 0.97*float64(rateN) && lateM <= 0.01 && (isNone(p99M) || p99M <= 100)
		switch {
		case firstBad != 0:
		case sustained:
			knee = rateN
		default:
			firstBad = rateN
		}
	}
	s.p("")
	const crit = "achieved ≥ 97 % of the rate, ≤ 1 % sent late, p99 ≤ 100 ms, medians"
	switch {
	case knee != 0 && firstBad != 0:
		s.p("The knee lies between **%s/s** (sustained: %s) and **%s/s** (not).", f0(float64(knee)), crit, f0(float64(firstBad)))
	case knee != 0:
		s.p("Every rate up to **%s/s** was sustained (%s); the knee is higher.", f0(float64(knee)), crit)
	default:
		s.p("No rate was sustained (%s).", crit)
	}
	s.p("")
}

// failures lists the loadgen runs that failed or left no report.
func (s *benchSummary) failures() {
	first := true
	for _, r := range s.runs {
		if !r.failed() {
			continue
		}
		if first {
			s.heading("Runs that did not pass")
			first = false
		}
		for i, path := range r.Reports[:min(len(r.Reports), len(r.RCs))] {
			x := r.reps[i]
			why := ""
			switch {
			case x == nil:
				why = "no report"
			case len(x.Failures) > 0:
				why = strings.Join(x.Failures, "; ")
			}
			line := fmt.Sprintf("- `%s`: loadgen exit %d", path, r.RCs[i])
			if why != "" {
				line += " — " + why
			}
			s.p("%s", line)
		}
	}
	if !first {
		s.p("")
	}
}

// commands shows the commands of the first run of each benchmark (and
// variant, where the variants start the service differently).
func (s *benchSummary) commands() {
	m := s.meta
	s.heading("Commands")
	s.p("`%s` ran, for example (the first run of each benchmark; every command is in "+
		"`%s/commands.txt`):", m.Invocation, m.Out)
	s.p("")
	s.p("```sh")
	s.p("go build -o bin/flashsale ./cmd/flashsale && go build -o bin/loadgen ./cmd/loadgen && go build -o bin/otlpsink ./scripts/otlpsink")
	nMax := 1
	for _, r := range s.runs {
		if r.Bench == "b5" {
			nMax = max(nMax, r.Instances)
		}
	}
	seen := map[string]bool{}
	for _, r := range s.runs {
		key := r.Bench
		switch r.Bench {
		case "b5":
			if r.Instances != nMax {
				continue
			}
			kind, _, _ := strings.Cut(r.Variant, "-")
			key += " " + kind
		case "b1", "b2":
			key += " " + r.Variant
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		s.p("# %s %s", r.Bench, r.Variant)
		for _, c := range r.Commands {
			s.p("%s", strings.ReplaceAll(c, m.Root+"/", ""))
		}
	}
	s.p("```")
}
