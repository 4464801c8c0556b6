package main

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadFloodBoundsQueries floods the unthrottled reads (/health, /readyz,
// /metrics, GET /sales/active and GET /sales/{id}) of a real instance and
// counts the PostgreSQL statements it ran meanwhile, from its own
// db_query_duration_seconds: they are served from readings at most a second
// old, so the statements stay near one per second per reading (the active
// sale of the API, the sale asked for, the active sale of the gauges) plus
// the scheduler's, however many requests there are.
func TestReadFloodBoundsQueries(t *testing.T) {
	const requests, workers = 5000, 16
	e := MustEnv(t, nil)
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, 10, 10*time.Minute)
	paths := []string{"/health", "/readyz", "/metrics", "/sales/active", "/sales/" + itoa(sale.ID)}

	queries := func() float64 { return scrapeMetrics(t, inst.URL).value("db_query_duration_seconds", nil) }
	before := queries()
	start := time.Now()
	var next atomic.Int64
	statuses := make([]map[int]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		statuses[w] = map[int]int{}
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				resp, err := client.Get(inst.URL + paths[i%int64(len(paths))])
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[w][resp.StatusCode]++
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ran := queries() - before
	all := map[int]int{}
	for _, m := range statuses {
		for st, n := range m {
			all[st] += n
		}
	}
	if all[http.StatusOK] != requests {
		t.Errorf("answers %v, want %d× 200", all, requests)
	}
	secs := elapsed.Seconds()
	t.Logf("%d reads in %v (%.0f/s): %.0f PostgreSQL statements (%.1f/s)", requests, elapsed.Round(time.Millisecond), requests/secs, ran, ran/secs)
	// Three readings of a second each, started at most once per second
	// and once more at the edges, and the scheduler's few statements.
	if bound := 3*(secs+2) + 2*(secs+2); ran > bound {
		t.Errorf("%.0f statements for %d reads in %.1f s: want at most %.0f", ran, requests, secs, bound)
	}
}
