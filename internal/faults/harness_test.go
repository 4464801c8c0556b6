package faults

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

const adminToken = "faults-admin-token"

// size is how big a scenario's sale and crowd are.
type size struct {
	Items  int // items of the sale
	Users  int // buyers of the flash crowd
	Hammer int // overload: clients that ignore Retry-After
}

// sizes are small under `go test ./...` and full under FLASHSALE_FAULTS=full
// (`make test-faults`).
func sizes() size {
	if os.Getenv("FLASHSALE_FAULTS") == "full" {
		return size{Items: 10000, Users: 3000, Hammer: 3000}
	}
	return size{Items: 1000, Users: 300, Hammer: 800}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveCommands()
	os.Exit(code)
}

// binary builds a command of the module once per test binary and returns
// its path: the scenarios run the service (and the load generator) as an
// operator does, as processes that can be killed.
func binary(t *testing.T, pkg string) string {
	t.Helper()
	return testenv.Command(t, pkg)
}

// instance is one process of the service on a fixed loopback port, so that
// it comes back at the same address when restarted.
type instance struct {
	Name string
	Port int
	env  []string
	bin  string
	log  *testenv.Buffer // the output of every process it ran

	mu sync.Mutex
	p  *testenv.Process // the last one started
}

// deployEnv is the environment every instance of a deployment shares.
func deployEnv(dbURL, redisURL, prefix string, extra map[string]string) map[string]string {
	e := map[string]string{
		"DATABASE_URL":     dbURL,
		"REDIS_URL":        redisURL,
		"REDIS_KEY_PREFIX": prefix,
		"ADMIN_TOKEN":      adminToken,
		"SALE_ITEMS":       "10", // the scheduled sales are not the crowd's
		"LOG_LEVEL":        "info",
		"REQUEST_TIMEOUT":  "3s",
		"SHUTDOWN_DELAY":   "100ms",
		"SHUTDOWN_TIMEOUT": "15s",
		// The crowd's buyers fire as fast as they can from one address:
		// the abuse limits are off but in the overload scenario.
		"RATE_LIMIT_USER": "0",
		"RATE_LIMIT_ADDR": "0",
	}
	maps.Copy(e, extra)
	return e
}

// newInstance prepares an instance; start runs it. It is stopped when the
// test ends.
func newInstance(t *testing.T, name string, env map[string]string) *instance {
	t.Helper()
	in := &instance{Name: name, Port: testenv.FreePort(t), bin: testenv.ServiceBinary(t), log: &testenv.Buffer{}}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		in.env = append(in.env, k+"="+env[k])
	}
	in.env = append(in.env, "HTTP_ADDR=127.0.0.1:"+strconv.Itoa(in.Port), "PATH="+os.Getenv("PATH"))
	t.Cleanup(func() {
		if dir := os.Getenv("FLASHSALE_FAULTS_LOGDIR"); dir != "" {
			// Every instance's whole log, for a closer look.
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+in.Name+".log")
			if err := os.WriteFile(name, []byte(in.log.String()), 0o644); err != nil {
				t.Log(err)
			}
		}
		if t.Failed() {
			out := in.log.String()
			var errs []string
			for line := range strings.Lines(out) {
				if strings.Contains(line, `"status":500`) || strings.Contains(line, `"level":"ERROR"`) && !strings.Contains(line, `"status":503`) {
					if errs = append(errs, line); len(errs) == 5 {
						break
					}
				}
			}
			// A short tail: a CI report shows the last lines before the
			// failure, and the test's own messages are just above these.
			// FLASHSALE_FAULTS_LOGDIR keeps the whole log.
			t.Logf("%s log, errors other than 503:\n%s\n%s log (tail):\n%s", in.Name, strings.Join(errs, ""), in.Name, out[max(0, len(out)-1200):])
		}
	})
	return in
}

func (in *instance) URL() string { return "http://127.0.0.1:" + strconv.Itoa(in.Port) }

// start runs the process and waits until /readyz answers 200.
func (in *instance) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(in.bin)
	cmd.Env = in.env
	cmd.Stdout, cmd.Stderr = in.log, in.log
	fmt.Fprintf(in.log, "---- %s starting\n", in.Name)
	p := testenv.MustStartProcess(t, in.Name, cmd)
	t.Cleanup(func() {
		if !p.Stop(30 * time.Second) {
			t.Errorf("%s did not stop on SIGTERM", in.Name)
		}
	})
	in.mu.Lock()
	in.p = p
	in.mu.Unlock()
	if err := testenv.WaitReady(in.URL(), 60*time.Second, p); err != nil {
		t.Fatalf("%s: %v\n%s", in.Name, err, in.log)
	}
}

// proc is the last process started, nil before the first.
func (in *instance) proc() *testenv.Process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p
}

func (in *instance) signal(sig syscall.Signal) {
	if p := in.proc(); p != nil {
		p.Signal(sig)
	}
}

// kill kills the process with SIGKILL and waits for it.
func (in *instance) kill() {
	if p := in.proc(); p != nil {
		p.Kill()
	}
}

// wait waits for the process to exit; false on timeout.
func (in *instance) wait(timeout time.Duration) (*os.ProcessState, bool) {
	p := in.proc()
	if p == nil {
		return nil, true
	}
	if !p.Wait(timeout) {
		return nil, false
	}
	return p.State(), true
}

// createSale creates a sale of n items starting now through the admin API.
func createSale(t *testing.T, base string, n int) int64 {
	t.Helper()
	var s struct {
		ID int64 `json:"id"`
	}
	testenv.CreateSale(t, base, adminToken, n, 30*time.Minute, &s)
	return s.ID
}

// scrape reads /metrics.
func scrape(base string) (string, error) {
	hc := &http.Client{Timeout: 15 * time.Second}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %d", resp.StatusCode)
	}
	return string(raw), nil
}

// metric sums the samples of series name whose labels include each of
// labels (`key="value"`); false when there is none.
func metric(exposition, name string, labels ...string) (float64, bool) {
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbls string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			lbls, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another series with name as prefix
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(lbls, l)
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// summary is what a scenario reports about its fault.
type summary struct {
	Scenario string
	From, To time.Time // the fault: injected, lifted
	rec      *recorder
	// Target, when set, is the instance whose recovery is timed.
	Target string
	// RecoverFrom is when recovery is timed from; To when zero.
	RecoverFrom time.Time
	// NoRecovery: another fault follows at once, recovery is not timed.
	NoRecovery bool
	// AnsweredBy, when set, leaves out requests answered after it (by the
	// next fault).
	AnsweredBy time.Time
	Notes      []string
}

// report logs the requests started during the fault, the statuses seen and
// how long after the fault was lifted the first checkout or purchase
// succeeded, and returns the answers of the window.
func (s *summary) report(t *testing.T) []answer {
	t.Helper()
	during := s.rec.between(s.From, s.To)
	if !s.AnsweredBy.IsZero() {
		during = slices.DeleteFunc(during, func(a answer) bool { return a.End.After(s.AnsweredBy) })
	}
	statuses := map[string]int{}
	ok := 0
	for _, a := range during {
		statuses[string(a.Endpoint)+" "+a.label()]++
		if a.Status >= 200 && a.Status < 300 {
			ok++
		}
	}
	rec := "not observed"
	from, what := s.To, "after the fault was lifted"
	if !s.RecoverFrom.IsZero() {
		from, what = s.RecoverFrom, "after the fault"
	}
	if d, found := s.rec.recovery(from, s.Target); found {
		rec = d.Round(time.Millisecond).String()
	}
	if s.NoRecovery {
		rec, what = "(not timed: the next fault follows)", ""
	}
	keys := slices.Sorted(maps.Keys(statuses))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, statuses[k]))
	}
	line := fmt.Sprintf("FAULT %s: fault lasted %s; %d requests during it (%d answered 2xx); statuses {%s}; serving again (first checkout or purchase answered below 500) %s %s",
		s.Scenario, s.To.Sub(s.From).Round(time.Millisecond), len(during), ok, strings.Join(parts, ", "), rec, what)
	for _, n := range s.Notes {
		line += "; " + n
	}
	t.Log(line)
	return during
}

// checkAnswers verifies what every answer must be whatever the fault: no
// 5xx but 503, 503 and 429 with Retry-After, JSON errors, and no request
// that hung past bound (nil bound: no check).
func checkAnswers(t *testing.T, rec *recorder, bound time.Duration) {
	t.Helper()
	bad := 0
	for _, a := range rec.all() {
		problem := ""
		switch {
		case a.Status >= 500 && a.Status != http.StatusServiceUnavailable:
			problem = "a 5xx other than 503"
		case (a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests) && a.RetryAfter == 0:
			problem = "no Retry-After"
		case a.Code == loadgen.CodeInvalidResponse:
			problem = "not the API's JSON"
		case a.Code == loadgen.CodeTimeout:
			problem = "no answer within the client's timeout (a hang)"
		case bound > 0 && a.End.Sub(a.Start) > bound:
			problem = fmt.Sprintf("answered after %s, past the bound of %s", a.End.Sub(a.Start).Round(time.Millisecond), bound)
		}
		if problem != "" {
			if bad++; bad <= 10 {
				t.Errorf("%s to %s: %d %s %s: %s", a.Endpoint, a.Target, a.Status, a.Code, a.Detail, problem)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d bad answers in all", bad)
	}
}

// percentile returns the p-th percentile (0 < p ≤ 1) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// mustSQL opens a connection pool to url for the checks.
func mustSQL(t *testing.T, url string) *sql.DB {
	t.Helper()
	return testenv.MustOpenSQL(t, url)
}

// readBody drains a body into a bounded buffer.
func readBody(r io.Reader) []byte {
	var b bytes.Buffer
	_, _ = io.Copy(&b, io.LimitReader(r, 8<<20))
	return b.Bytes()
}

// poll calls f every interval until it returns true or timeout elapses.
func poll(ctx context.Context, timeout, interval time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(interval):
		}
	}
}
