package faults

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/loadgen"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// clientTimeout is the crowd's request timeout: an answer slower than this
// is a hang. Generous: only a hang reaches it.
const clientTimeout = 45 * time.Second

// hangBound is how long an answer may take at most with the deployment's
// REQUEST_TIMEOUT (3s) and QUEUE_WAIT (5s by default), with ample slack: a
// slower one means a request hung.
const hangBound = 20 * time.Second

// crowdDeadline bounds a crowd.
const crowdDeadline = 4 * time.Minute

// deployment is n instances of the service sharing a database and Redis.
type deployment struct {
	insts  []*instance
	saleID int64
	c      *client
	led    *ledger
}

func deploy(t *testing.T, n int, env map[string]string) *deployment {
	t.Helper()
	d := &deployment{led: newLedger()}
	var urls []string
	start := time.Now()
	for i := range n {
		in := newInstance(t, fmt.Sprintf("instance-%d", i), env)
		in.start(t)
		d.insts = append(d.insts, in)
		urls = append(urls, in.URL())
	}
	t.Logf("%d instance(s) ready in %s", n, time.Since(start).Round(time.Millisecond))
	d.saleID = createSale(t, urls[0], sizes().Items)
	d.c = newClient(urls, clientTimeout)
	t.Cleanup(d.c.close)
	return d
}

// startCanary sends, to every instance every 25ms, a checkout of a random
// item by a user of its own, until the returned stop is called: an answer
// below 500 from each instance whenever it serves, even after the crowd
// has sold out, which times the recovery from a fault.
func (d *deployment) startCanary(t *testing.T, items int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range d.insts {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for n := 0; ctx.Err() == nil; n++ {
				item := d.saleID*1_000_000 + 1 + int64(rng.IntN(items))
				out, a := d.c.checkout(i, fmt.Sprintf("canary%d-%d", i, n/8), item)
				d.led.checkedOut(item, out, a)
				select {
				case <-ctx.Done():
				case <-time.After(25 * time.Millisecond):
				}
			}
		})
	}
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// stopCanaryAfter stops the canary a second after t at the earliest, so that
// it shows when the service served again after a fault lifted at t.
func stopCanaryAfter(stop func(), t time.Time) {
	time.Sleep(time.Until(t.Add(time.Second)))
	stop()
}

// readyWatch polls /readyz of base every interval over fresh connections
// and keeps what it saw.
type readyWatch struct {
	mu   sync.Mutex
	seen []probe
	stop context.CancelFunc
	done chan struct{}
}

type probe struct {
	At     time.Time
	Status int // 0: no answer (connection refused, ...)
}

func watchReady(base string, interval time.Duration) *readyWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &readyWatch{stop: cancel, done: make(chan struct{})}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			p := probe{At: time.Now()}
			if resp, err := hc.Get(base + "/readyz"); err == nil {
				resp.Body.Close()
				p.Status = resp.StatusCode
			}
			w.mu.Lock()
			w.seen = append(w.seen, p)
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}()
	return w
}

func (w *readyWatch) close() []probe {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// Scenario 1: one of three instances is killed with SIGKILL mid-crowd and
// restarted. The others keep serving; nothing acknowledged is lost.
func TestKillOneOfThreeInstances(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	d := deploy(t, 3, deployEnv(dbURL, redisURL, prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	from := time.Now()
	d.insts[0].kill()
	time.Sleep(time.Second) // the other two serve alone
	d.insts[0].start(t)
	to := time.Now()
	cr.wait()
	stopCanaryAfter(stopCanary, to)
	t.Logf("crowd done %s after the fault was lifted", time.Since(to).Round(time.Millisecond))
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	s := &summary{Scenario: "kill -9 of 1 of 3 instances, restarted 1s later", From: from, To: to, rec: d.c.rec, Target: d.insts[0].URL()}
	during := s.rec.between(from, to)
	served, failed := 0, 0
	for _, a := range during {
		if a.Target == d.insts[0].URL() {
			continue
		}
		if a.Status > 0 && a.Status < 500 {
			served++
		} else {
			failed++
		}
	}
	s.Notes = append(s.Notes, fmt.Sprintf("the other instances answered %d of %d requests without 5xx or transport error (%.1f%%)",
		served, served+failed, 100*float64(served)/float64(max(served+failed, 1))))
	// A cart whose purchase lock the killed instance held waits for the
	// lock's TTL: its purchases answer purchase_in_progress until then.
	var lastBusy time.Time
	for _, a := range d.c.rec.all() {
		if a.Code == "purchase_in_progress" && a.Start.After(from) && a.End.After(lastBusy) {
			lastBusy = a.End
		}
	}
	if !lastBusy.IsZero() {
		s.Notes = append(s.Notes, fmt.Sprintf("last purchase_in_progress answered %s after the kill", lastBusy.Sub(from).Round(time.Millisecond)))
	}
	s.report(t)
	if served == 0 {
		t.Error("the surviving instances answered nothing while one was down")
	}
	for _, a := range during {
		if a.Target != d.insts[0].URL() && a.Status == 0 {
			t.Errorf("a surviving instance did not answer: %s %s", a.Endpoint, a.Detail)
			break
		}
	}
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
	ghosts := staleInRedis(t, mustSQL(t, dbURL), testenv.MustRedisClient(t, redisURL), prefix, d.saleID)
	t.Logf("items sold in PostgreSQL that Redis still holds unsold (their seller was killed before recording the sale in Redis): %d", ghosts)
}

// staleInRedis counts the items of the sale sold in PostgreSQL whose bit in
// the Redis sold bitmap is not set: checkouts of them are accepted and
// purchases then sell nothing, until the Redis state is rebuilt.
func staleInRedis(t *testing.T, db *sql.DB, rdb *redis.Client, prefix string, saleID int64) int {
	t.Helper()
	ctx := context.Background()
	bitmap, err := rdb.Get(ctx, fmt.Sprintf("%s:{%s:%d}:sold", prefix, prefix, saleID)).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT id % 1000000 FROM items WHERE sale_id = $1 AND sold`, saleID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stale := 0
	for rows.Next() {
		var seq int
		if err := rows.Scan(&seq); err != nil {
			t.Fatal(err)
		}
		// SETBIT numbers bits from the most significant of byte 0.
		if seq/8 >= len(bitmap) || bitmap[seq/8]&(0x80>>(seq%8)) == 0 {
			stale++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return stale
}

// Scenario 2: Redis loses every key (FLUSHALL), later it restarts empty,
// mid-crowd. The service rebuilds its Redis state from PostgreSQL and keeps
// selling until every item is sold; nothing is oversold, no user exceeds
// the limit.
func TestRedisFlushAndRestart(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t) // skips, unless required, before anything starts
	rs := testenv.StartRedis(t)
	const prefix = "fs"
	d := deploy(t, 2, deployEnv(dbURL, rs.URL(), prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	rdb := testenv.MustRedisClient(t, rs.URL())
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	flushAt := time.Now()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("FLUSHALL at %s", flushAt.UTC().Format(time.RFC3339Nano))

	cr.waitSold(3 * sz.Items / 10)
	time.Sleep(time.Until(flushAt.Add(time.Second))) // the flush's second
	downAt := time.Now()
	t.Logf("Redis killed at %s", downAt.UTC().Format(time.RFC3339Nano))
	rs.Kill()
	time.Sleep(time.Second)
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	cr.wait()
	stopCanaryAfter(stopCanary, upAt)
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	// The flush is instant: the requests of the second after it are its
	// window, but for those answered after Redis was killed.
	flushed := &summary{Scenario: "Redis FLUSHALL (window: the second after it, answers before Redis was killed)", From: flushAt,
		To: downAt, AnsweredBy: downAt, RecoverFrom: flushAt, rec: d.c.rec}
	flushed.report(t)
	(&summary{Scenario: "Redis killed, restarted empty 1s later", From: downAt, To: upAt, rec: d.c.rec}).report(t)
	ready := fmt.Sprintf("%s:{%s:%d}:ready", prefix, prefix, d.saleID)
	if n, err := rdb.Exists(context.Background(), ready).Result(); err != nil || n != 1 {
		t.Errorf("the sale's Redis state was not rebuilt after the restart: EXISTS %s = %d, %v", ready, n, err)
	}
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
}

// Scenario 3: PostgreSQL crashes (immediate shutdown) mid-crowd and comes
// back 3s later. Meanwhile the API answers 503 with Retry-After, neither
// 500 nor a hang, and /readyz is 503; afterwards it recovers by itself and
// nothing acknowledged is lost.
func TestPostgresRestart(t *testing.T) {
	sz := sizes()
	redisURL, prefix := testenv.MustRedis(t) // skips, unless required, before anything starts
	pg := testenv.StartPostgres(t)
	dbURL := pg.URL("flashsale")
	d := deploy(t, 1, deployEnv(dbURL, redisURL, prefix, map[string]string{"DB_MAX_OPEN_CONNS": "20"}))
	base := d.insts[0].URL()
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	w := watchReady(base, 50*time.Millisecond)
	downAt := time.Now()
	if err := pg.Stop("immediate"); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	time.Sleep(3 * time.Second)
	startAt := time.Now()
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	readyAgain := testenv.WaitReady(base, time.Minute, nil)
	readyAt := time.Now()
	cr.wait()
	stopCanaryAfter(stopCanary, upAt)
	probes := w.close()
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	if readyAgain != nil {
		t.Errorf("/readyz after PostgreSQL came back: %v", readyAgain)
	}
	// Readiness while the database was down: 503 once the readings taken
	// before it went down (kept a second) are stale. It is down once the
	// stop returns, which on a loaded machine can be well after downAt.
	notReady, readyWhileDown := 0, 0
	for _, p := range probes {
		if p.At.After(stoppedAt.Add(time.Second)) && p.At.Before(startAt) {
			switch p.Status {
			case http.StatusServiceUnavailable:
				notReady++
			case http.StatusOK:
				readyWhileDown++
			}
		}
	}
	if notReady == 0 || readyWhileDown > 0 {
		t.Errorf("/readyz while PostgreSQL was down: %d answers 503, %d answers 200", notReady, readyWhileDown)
	}
	s := &summary{Scenario: "PostgreSQL crash (immediate stop), restarted 3s later", From: downAt, To: upAt, rec: d.c.rec,
		Notes: []string{fmt.Sprintf("/readyz 503 on %d probes while down, 200 again %s after PostgreSQL was up",
			notReady, readyAt.Sub(upAt).Round(time.Millisecond))}}
	during := s.report(t)
	unavailable := 0
	for _, a := range during {
		if a.Status == http.StatusServiceUnavailable && a.Start.After(downAt.Add(time.Second)) {
			unavailable++
		}
	}
	if unavailable == 0 {
		t.Error("no request was answered 503 while PostgreSQL was down")
	}
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
}

// Scenario 4: PostgreSQL and Redis behind a proxy that first adds latency,
// then stalls every connection for longer than any request may take.
// Requests are answered (503) within their deadline plus the timeouts of
// the dependency work already under way, not when the dependencies come
// back; the pools do not leak and the goroutine count returns to its
// baseline once the stall ends.
func TestSlowDependencies(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	pu, _ := url.Parse(dbURL)
	ru, _ := url.Parse(redisURL)
	pgProxy, redisProxy := testenv.StartProxy(t, pu.Host), testenv.StartProxy(t, ru.Host)
	pu.Host, ru.Host = pgProxy.Addr(), redisProxy.Addr()
	const requestTimeout, queueWait = 2 * time.Second, time.Second
	// Work already handed to a dependency is waited for up to that
	// dependency's own timeout, whatever the request's deadline: a Redis
	// script once queued up to the Redis command timeout (3s,
	// internal/redis), a queued checkout-attempt or purchase batch up to the
	// batch timeout (5s, internal/postgres). A checkout may meet both.
	const redisCommandTimeout, batchTimeout = 3 * time.Second, 5 * time.Second
	// So every request in flight during the stall is answered within the
	// admission wait, its deadline and those two timeouts, with slack. The
	// stall outlasts this bound: a request that waited for the dependency
	// to come back breaks it.
	const bound = queueWait + requestTimeout + redisCommandTimeout + batchTimeout + 3*time.Second
	const stallFor = bound + 4*time.Second
	const maxDB = 16
	d := deploy(t, 1, deployEnv(pu.String(), ru.String(), prefix, map[string]string{
		"REQUEST_TIMEOUT": requestTimeout.String(), "QUEUE_WAIT": queueWait.String(), "MAX_INFLIGHT": "128",
		"DB_MAX_OPEN_CONNS": strconv.Itoa(maxDB), "DB_MAX_IDLE_CONNS": strconv.Itoa(maxDB), "REDIS_POOL_SIZE": "32",
	}))
	base := d.insts[0].URL()
	exp, err := scrape(base)
	if err != nil {
		t.Fatal(err)
	}
	baseline, _ := metric(exp, "go_goroutines")

	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}
	slowAt := time.Now()
	pgProxy.SetLatency(20 * time.Millisecond)
	redisProxy.SetLatency(20 * time.Millisecond)
	time.Sleep(2 * time.Second)
	stallAt := time.Now()
	pgProxy.Stall()
	redisProxy.Stall()
	time.Sleep(stallFor)
	pgProxy.Resume()
	redisProxy.Resume()
	pgProxy.SetLatency(0)
	redisProxy.SetLatency(0)
	resumeAt := time.Now()
	cr.wait()
	stopCanaryAfter(stopCanary, resumeAt)
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	(&summary{Scenario: "PostgreSQL and Redis +20ms per chunk each way", From: slowAt, To: stallAt, rec: d.c.rec, NoRecovery: true}).report(t)
	(&summary{Scenario: fmt.Sprintf("PostgreSQL and Redis stalled for %s", resumeAt.Sub(stallAt).Round(time.Millisecond)),
		From: stallAt, To: resumeAt, rec: d.c.rec}).report(t)
	// Every request in flight at some point of the stall, sent before it or
	// during it.
	slowest, late := answer{}, 0
	for _, a := range d.c.rec.all() {
		if !a.Start.Before(resumeAt) || !a.End.After(stallAt) {
			continue
		}
		took := a.End.Sub(a.Start)
		if took > slowest.End.Sub(slowest.Start) {
			slowest = a
		}
		if took > bound {
			if late++; late <= 3 {
				t.Errorf("%s sent %s into the stall answered %d %s after %s, past QUEUE_WAIT + REQUEST_TIMEOUT + Redis command timeout + batch timeout + 3s = %s: it waited for other requests' batches to time out",
					a.Endpoint, a.Start.Sub(stallAt).Round(time.Millisecond), a.Status, a.Code, took.Round(time.Millisecond), bound)
			}
		}
	}
	if late > 3 {
		t.Errorf("... %d requests answered past %s in all", late, bound)
	}
	t.Logf("slowest answer to a request in flight during the stall: %s %d %s after %s (REQUEST_TIMEOUT %s, bound %s)",
		slowest.Endpoint, slowest.Status, slowest.Code, slowest.End.Sub(slowest.Start).Round(time.Millisecond), requestTimeout, bound)
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)

	// Idle again: the client's connections closed, the pools return to
	// idle and the goroutines to the baseline.
	d.c.close()
	var last string
	settled := poll(context.Background(), 30*time.Second, 250*time.Millisecond, func() bool {
		exp, err := scrape(base)
		if err != nil {
			last = err.Error()
			return false
		}
		g, _ := metric(exp, "go_goroutines")
		dbActive, _ := metric(exp, "db_connections_active")
		dbIdle, _ := metric(exp, "db_connections_idle")
		redisUsed, _ := metric(exp, "db_client_connections_usage", `state="used"`)
		last = fmt.Sprintf("go_goroutines %.0f (baseline %.0f), db_connections_active %.0f, db_connections_idle %.0f, db_client_connections_usage{state=used} %.0f",
			g, baseline, dbActive, dbIdle, redisUsed)
		return g <= baseline+10 && dbActive == 0 && dbActive+dbIdle <= maxDB && redisUsed == 0
	})
	t.Logf("after the load: %s", last)
	if !settled {
		t.Errorf("the service did not return to idle within 30s: %s", last)
	}
}

// Scenario 5: SIGTERM under load. /readyz turns 503 while the listener
// still serves (SHUTDOWN_DELAY), requests in flight finish, every
// acknowledged checkout has its row, the process exits 0 within
// SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT; a new process takes over.
func TestSIGTERMUnderLoad(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	const delay, timeout = 2 * time.Second, 10 * time.Second
	d := deploy(t, 1, deployEnv(dbURL, redisURL, prefix, map[string]string{
		"SHUTDOWN_DELAY": delay.String(), "SHUTDOWN_TIMEOUT": timeout.String(),
	}))
	in := d.insts[0]
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	w := watchReady(in.URL(), 20*time.Millisecond)
	sigAt := time.Now()
	in.signal(syscall.SIGTERM)
	st, exited := in.wait(delay + timeout + 10*time.Second)
	exitAt := time.Now()
	probes := w.close()
	if !exited {
		t.Fatalf("the service did not exit within SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT + 10s")
	}
	if st.ExitCode() != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", st.ExitCode())
	}
	in.start(t) // the next process takes over
	upAt := time.Now()
	cr.wait()
	stopCanaryAfter(stopCanary, upAt)
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	// Readiness: 503 first, while the listener still answers; refused
	// connections only after.
	var notReadyAt, refusedAt time.Time
	for _, p := range probes {
		if p.At.Before(sigAt) {
			continue
		}
		if p.Status == http.StatusServiceUnavailable && notReadyAt.IsZero() {
			notReadyAt = p.At
		}
		if p.Status == 0 && refusedAt.IsZero() {
			refusedAt = p.At
		}
		if p.Status == http.StatusOK && p.At.After(sigAt.Add(500*time.Millisecond)) {
			t.Errorf("/readyz answered 200 %s after SIGTERM", p.At.Sub(sigAt).Round(time.Millisecond))
		}
	}
	switch {
	case notReadyAt.IsZero():
		t.Error("/readyz never answered 503 after SIGTERM")
	case !refusedAt.IsZero() && refusedAt.Before(notReadyAt):
		t.Error("connections were refused before /readyz answered 503")
	}
	// Requests sent while draining (before the listener closes, with a
	// margin for the close itself) are all answered.
	drainEnd := sigAt.Add(delay - 500*time.Millisecond)
	drained, servedOK := 0, 0
	for _, a := range d.c.rec.between(sigAt, drainEnd) {
		drained++
		if a.Status == 0 {
			t.Errorf("%s sent %s after SIGTERM, during SHUTDOWN_DELAY, got no answer: %s", a.Endpoint, a.Start.Sub(sigAt).Round(time.Millisecond), a.Detail)
		} else if a.Status < 500 {
			servedOK++
		}
	}
	if drained == 0 {
		t.Error("the crowd sent nothing while the service drained")
	}
	s := &summary{Scenario: "SIGTERM under load, a new process started after the exit", From: sigAt, To: upAt, rec: d.c.rec,
		Notes: []string{
			fmt.Sprintf("/readyz 503 %s after SIGTERM", notReadyAt.Sub(sigAt).Round(time.Millisecond)),
			fmt.Sprintf("%d of %d requests sent while draining answered below 500", servedOK, drained),
			fmt.Sprintf("exit status %d %s after SIGTERM (SHUTDOWN_DELAY %s)", st.ExitCode(), exitAt.Sub(sigAt).Round(time.Millisecond), delay),
		}}
	s.report(t)
	checkAnswers(t, d.c.rec, hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
}

// Scenario 6: far more concurrent clients than the service can serve, each
// sending again at once whatever the answer, beside cmd/loadgen sending
// checkouts on a schedule far above what the service takes. The service
// sheds the excess with 503 overloaded (or 429) and Retry-After instead of
// queueing without bound, no accepted request hangs, memory stays bounded,
// and the sale's guarantees hold.
func TestOverload(t *testing.T) {
	sz := sizes()
	dbURL := testenv.MustDatabase(t)
	redisURL, prefix := testenv.MustRedis(t)
	const requestTimeout, queueWait = 3 * time.Second, 250 * time.Millisecond
	const rssCap = 1 << 30
	// The abuse limits at their defaults: a shed request may be a 429.
	d := deploy(t, 1, deployEnv(dbURL, redisURL, prefix, map[string]string{
		"MAX_INFLIGHT": "32", "QUEUE_WAIT": queueWait.String(), "REQUEST_TIMEOUT": requestTimeout.String(),
		"RATE_LIMIT_USER": "", "RATE_LIMIT_ADDR": "",
	}))
	base := d.insts[0].URL()
	cr := startCrowd(t, d.c, d.led, d.saleID, sz.Items, sz.Users, crowdDeadline)
	stopCanary := d.startCanary(t, sz.Items)
	if !cr.waitSold(sz.Items / 10) {
		t.Fatal("the crowd ended before a tenth of the sale was sold")
	}

	// Memory, sampled through the overload.
	var maxRSS float64
	memCtx, stopMem := context.WithCancel(context.Background())
	memDone := make(chan struct{})
	go func() {
		defer close(memDone)
		for memCtx.Err() == nil {
			if exp, err := scrape(base); err == nil {
				if v, ok := metric(exp, "process_resident_memory_bytes"); ok {
					maxRSS = max(maxRSS, v)
				}
			}
			select {
			case <-memCtx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	// Two sources of overload at once: cmd/loadgen's open profile, a
	// process of its own that sends checkouts on a schedule of its own sale
	// whatever the answers' latency, and clients in this test that record
	// every answer. The test's clients alone may not outrun the service:
	// built with -race, they are slower than it is.
	const overload, lgRate = 5 * time.Second, 20000
	lg := startLoadgen(t, "-profile", "open", "-target", base, "-create-sale", "-items", fmt.Sprint(sz.Items),
		"-sale-duration", "30m", "-admin-token", adminToken, "-rate", fmt.Sprint(lgRate), "-max-inflight", fmt.Sprint(sz.Hammer),
		"-duration", overload.String(), "-database-url", dbURL)
	hammer := newClient([]string{base}, clientTimeout)
	defer hammer.close()
	from := time.Now()
	hctx, stopHammer := context.WithTimeout(context.Background(), overload)
	var wg sync.WaitGroup
	for h := range sz.Hammer {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(h), uint64(from.UnixNano())))
			for n := 0; hctx.Err() == nil; n++ {
				if n%2 == 0 {
					offset := rng.IntN(max(sz.Items-1000, 1))
					hammer.do(0, loadgen.EndpointItems, func(api *loadgen.Client) loadgen.Response {
						_, res := api.Items(context.Background(), d.saleID, offset, 1000)
						return res
					})
				} else {
					item := d.saleID*1_000_000 + 1 + int64(rng.IntN(sz.Items))
					out, a := hammer.checkout(0, fmt.Sprintf("hammer-%d-%d", h, n), item)
					d.led.checkedOut(item, out, a)
				}
			}
		})
	}
	wg.Wait()
	stopHammer()
	to := time.Now()
	rep := lg.wait(t, time.Minute)
	rep.check(t)
	stopMem()
	<-memDone
	cr.wait()
	stopCanaryAfter(stopCanary, to)
	sweep(t, d.c, d.led, mustSQL(t, dbURL), d.saleID)

	all := append(hammer.rec.between(from, to), d.c.rec.between(from, to)...)
	shed, accepted := 0, []time.Duration{}
	for _, a := range all {
		switch {
		case a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests:
			shed++
		case a.Status > 0 && a.Status < 500:
			accepted = append(accepted, a.End.Sub(a.Start))
		}
	}
	lgShed := 0
	for k, n := range rep.statuses() {
		if strings.HasSuffix(k, " 503") || strings.HasSuffix(k, " 429") {
			lgShed += int(n)
		}
	}
	merged := &recorder{answers: append(hammer.rec.all(), d.c.rec.all()...)}
	s := &summary{Scenario: fmt.Sprintf("overload: %d clients sending without pause for %s beside the crowd (MAX_INFLIGHT 32, QUEUE_WAIT %s)", sz.Hammer, overload, queueWait),
		From: from, To: to, rec: merged,
		Notes: []string{
			fmt.Sprintf("%d shed with 503/429 (%.1f%%)", shed, 100*float64(shed)/float64(max(len(all), 1))),
			fmt.Sprintf("accepted requests: %d, p50 %s, p99 %s, max %s", len(accepted),
				percentile(accepted, 0.5).Round(time.Millisecond), percentile(accepted, 0.99).Round(time.Millisecond),
				percentile(accepted, 1).Round(time.Millisecond)),
			fmt.Sprintf("max RSS %.0f MiB (cap %d MiB)", maxRSS/(1<<20), rssCap>>20),
			fmt.Sprintf("cmd/loadgen -profile open at %d checkouts/s on a sale of its own: %s; %d shed with 503/429", lgRate, rep, lgShed),
		}}
	s.report(t)
	if shed+lgShed == 0 {
		t.Error("nothing was shed: the overload did not overload, or the service queued without bound")
	}
	if maxRSS == 0 || maxRSS > rssCap {
		t.Errorf("process_resident_memory_bytes peaked at %.0f during the overload, cap %d", maxRSS, rssCap)
	}
	checkAnswers(t, hammer.rec, queueWait+requestTimeout+hangBound)
	checkAnswers(t, d.c.rec, queueWait+requestTimeout+hangBound)
	checkSale(t, mustSQL(t, dbURL), d.saleID, d.led, true)
	checkHistory(t, d.c.hist)
}
