package faults

import (
	"bytes"
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

	"github.com/flashsale/flashsale/internal/testenv"
)

// loadgenReport is the part of cmd/loadgen's -json report the scenario
// reads (its fields are documented in cmd/loadgen/doc.go).
type loadgenReport struct {
	Target    string    `json:"target"`
	StartedAt time.Time `json:"started_at"`
	EndedBy   string    `json:"ended_by"`
	SoldOut   bool      `json:"sold_out"`
	Totals    struct {
		Requests int64 `json:"requests"`
	} `json:"totals"`
	Endpoints []struct {
		Endpoint string           `json:"endpoint"`
		Statuses map[string]int64 `json:"statuses"`
		Errors   map[string]int64 `json:"errors"`
	} `json:"endpoints"`
	ClientViolations []string `json:"client_violations"`
	Invariants       *struct {
		Result string `json:"result"`
	} `json:"invariants"`
	Timeline []struct {
		T        int              `json:"t"`
		Requests map[string]int64 `json:"requests"`
		Errors   int64            `json:"errors"`
	} `json:"timeline"`
	Result   string   `json:"result"`
	Failures []string `json:"failures"`
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
	lg := binary(t, "github.com/flashsale/flashsale/cmd/loadgen")
	var targets []string
	for _, in := range d.insts {
		targets = append(targets, in.URL())
	}
	cmd := exec.Command(lg, "-profile", "flash", "-users", fmt.Sprint(sz.Users), "-target", strings.Join(targets, ","),
		"-sale", fmt.Sprint(d.saleID), "-database-url", dbURL, "-duration", crowdDeadline.String(), "-timeout", clientTimeout.String(), "-json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	db := mustSQL(t, dbURL)
	sold := func() int {
		var n int
		_ = db.QueryRowContext(context.Background(), `SELECT items_sold FROM sales WHERE id = $1`, d.saleID).Scan(&n)
		return n
	}
	if !poll(context.Background(), time.Minute, 20*time.Millisecond, func() bool { return sold() >= sz.Items/10 }) {
		t.Fatalf("a tenth of the sale was not sold within a minute\n%s", stderr.String())
	}
	from := time.Now()
	d.insts[0].kill()
	time.Sleep(time.Second)
	d.insts[0].start(t)
	to := time.Now()

	var runErr error
	select {
	case runErr = <-exited:
	case <-time.After(crowdDeadline + time.Minute):
		t.Fatal("loadgen did not finish")
	}
	var rep loadgenReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("loadgen report: %v (exit: %v)\n%s\n%s", err, runErr, stdout.String(), stderr.String())
	}
	if runErr != nil || rep.Result != "PASS" {
		t.Errorf("loadgen: %v, result %s, failures %q, client violations %q", runErr, rep.Result, rep.Failures, rep.ClientViolations)
	}
	if rep.Invariants == nil || rep.Invariants.Result != "PASS" {
		t.Errorf("loadgen's invariant check: %+v", rep.Invariants)
	}

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
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(statuses)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, statuses[k]))
	}
	t.Logf("FAULT kill -9 of 1 of 3 instances under cmd/loadgen -profile flash (%d users), restarted 1s later: fault lasted %s; %d requests in the seconds of the fault, %d of them 5xx or unanswered; whole run: %d requests, statuses {%s}; ended by %s, sold out %v, loadgen %s",
		sz.Users, to.Sub(from).Round(time.Millisecond), during, errs, rep.Totals.Requests, strings.Join(parts, ", "), rep.EndedBy, rep.SoldOut, rep.Result)

	c := newClient(targets, clientTimeout)
	defer c.close()
	sweep(t, c, newLedger(), db, d.saleID)
	checkSale(t, db, d.saleID, nil, true)
}
