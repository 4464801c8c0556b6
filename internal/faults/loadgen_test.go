package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
)

// loadgenRun is cmd/loadgen's -json report and how its process exited.
type loadgenRun struct {
	*loadgen.Report
	RunErr error // nil for status 0
}

// Scenario 1 under the real load generator: cmd/loadgen's flash profile
// spread over three instances (-target a,b,c) while one of them is killed
// with SIGKILL and restarted. loadgen's own verdict must be PASS — no 5xx
// but 503, no broken guarantee seen by the clients, invariants PASS in
// PostgreSQL — and the sale sells out.
func TestKillOneOfThreeUnderLoadgen(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	d := deploy(t, 3, deployEnv(dbURL, redisURL, prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	var targets []string
	for _, in := range d.insts {
		targets = append(targets, in.URL())
	}
	lg := startLoadgen(t, "-profile", "flash", "-users", fmt.Sprint(sz.Users), "-target", strings.Join(targets, ","),
		"-sale", fmt.Sprint(d.saleID), "-database-url", dbURL, "-duration", crowdDeadline.String())

	db := mustSQL(t, dbURL)
	sold := func() int {
		var n int
		_ = db.QueryRowContext(context.Background(), `SELECT items_sold FROM sales WHERE id = $1`, d.saleID).Scan(&n)
		return n
	}
	if !poll(context.Background(), time.Minute, 20*time.Millisecond, func() bool { return sold() >= sz.Items/10 }) {
		t.Fatalf("a tenth of the sale was not sold within a minute\n%s", lg.stderr.String())
	}
	from := time.Now()
	d.insts[0].kill()
	time.Sleep(time.Second)
	d.insts[0].start(t)
	to := time.Now()

	rep := lg.wait(t, crowdDeadline+time.Minute)
	rep.check(t)

	// The seconds of loadgen's timeline that overlap the fault.
	var during, errs int64
	for _, s := range rep.Timeline {
		at := rep.StartedAt.Add(time.Duration(s.T) * time.Second)
		if at.Add(time.Second).After(from) && at.Before(to) {
			for _, n := range s.Requests {
				during += n
			}
			errs += s.Errors
		}
	}
	t.Logf("FAULT kill -9 of 1 of 3 instances under cmd/loadgen -profile flash (%d users), restarted 1s later: fault lasted %s; %d requests in the seconds of the fault, %d of them 5xx or unanswered; whole run: %s",
		sz.Users, to.Sub(from).Round(time.Millisecond), during, errs, rep)

	c := newClient(targets, clientTimeout)
	defer c.close()
	sweep(t, c, newLedger(), db, d.saleID)
	checkSale(t, db, d.saleID, nil, true)
}

// loadgenProc is cmd/loadgen running as a process, its report written as JSON.
type loadgenProc struct {
	cmd            *exec.Cmd
	stdout, stderr testenv.Buffer
	exited         chan struct{} // closed once the process has exited
	err            error         // how it exited: nil for status 0; set before exited closes
}

// startLoadgen runs cmd/loadgen with args (and -json, and -timeout
// clientTimeout); it is killed at the end of the test if still running.
func startLoadgen(t *testing.T, args ...string) *loadgenProc {
	t.Helper()
	lg := &loadgenProc{exited: make(chan struct{})}
	lg.cmd = exec.Command(binary(t, "github.com/flashsale/flashsale/cmd/loadgen"), append(args, "-timeout", clientTimeout.String(), "-json")...)
	lg.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	lg.cmd.Stdout, lg.cmd.Stderr = &lg.stdout, &lg.stderr
	if err := lg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		lg.err = lg.cmd.Wait()
		close(lg.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-lg.exited:
		default:
			_ = lg.cmd.Process.Kill()
			<-lg.exited
		}
	})
	return lg
}

// wait waits up to timeout for loadgen to exit and returns its report; the
// run's exit status is the report's RunErr.
func (lg *loadgenProc) wait(t *testing.T, timeout time.Duration) *loadgenRun {
	t.Helper()
	select {
	case <-lg.exited:
	case <-time.After(timeout):
		t.Fatalf("loadgen did not finish within %s\n%s", timeout, lg.stderr.String())
	}
	rep := &loadgenRun{Report: &loadgen.Report{}, RunErr: lg.err}
	if err := json.Unmarshal([]byte(lg.stdout.String()), rep.Report); err != nil {
		t.Fatalf("loadgen report: %v (exit: %v)\n%s\n%s", err, lg.err, lg.stdout.String(), lg.stderr.String())
	}
	return rep
}

// check fails the test unless loadgen's verdict is PASS: exit 0, no 5xx but
// 503, no guarantee broken as its clients saw them, and the invariants
// checked in PostgreSQL (-database-url) PASS.
func (rep *loadgenRun) check(t *testing.T) {
	t.Helper()
	if rep.RunErr != nil || rep.Result != loadgen.ResultPass {
		t.Errorf("loadgen: %v, result %s, failures %q, client violations %q", rep.RunErr, rep.Result, rep.Failures, rep.ClientViolations)
	}
	if rep.Invariants == nil || rep.Invariants.Result != loadgen.ResultPass {
		t.Errorf("loadgen's invariant check: %+v", rep.Invariants)
	}
}

// statuses counts the run's answers by endpoint and status, and the
// requests without an answer by endpoint and "timeout" or "transport".
func (rep *loadgenRun) statuses() map[string]int64 {
	statuses := map[string]int64{}
	for _, e := range rep.Endpoints {
		for k, n := range e.Statuses {
			statuses[e.Endpoint+" "+k] += n
		}
		for k, n := range e.Errors {
			if k == "timeout" || k == "transport" {
				statuses[e.Endpoint+" "+k] += n
			}
		}
	}
	return statuses
}

// String sums the run up: requests, statuses, how it ended, its verdict.
func (rep *loadgenRun) String() string {
	statuses := rep.statuses()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(statuses)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, statuses[k]))
	}
	return fmt.Sprintf("%d requests, statuses {%s}; ended by %s, sold out %v, loadgen %s",
		rep.Totals.Requests, strings.Join(parts, ", "), rep.EndedBy, rep.SoldOut, rep.Result)
}
