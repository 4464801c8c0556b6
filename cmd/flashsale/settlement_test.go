package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/testenv"
)

// awaitScrape scrapes base/metrics until ok accepts a scrape, and fails the
// test after a minute.
func awaitScrape(t *testing.T, base, what string, ok func(metricsScrape) bool) metricsScrape {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := scrapeMetrics(t, base)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scrape with %s; last sale_settlement_violations: %v", what, s["sale_settlement_violations"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settlementSeries returns the scraped sale_settlement_violations by check.
func settlementSeries(s metricsScrape) map[string]float64 {
	got := map[string]float64{}
	for _, m := range s["sale_settlement_violations"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "check" {
				got[lp.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}

// TestSettlementProofOnMetrics runs the service with a short settlement
// interval: /metrics shows 0 for every check of the running sale, then the
// breach planted in PostgreSQL behind the service's back, logged at ERROR.
func TestSettlementProofOnMetrics(t *testing.T) {
	AwayFromTheHour(time.Minute) // the planted sale stays the running one
	e := MustEnv(t, env{"SETTLEMENT_INTERVAL": "200ms"})
	inst := MustStart(t, e)
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	checks := invariants.CheckNames()

	s := awaitScrape(t, inst.URL, "every check at 0", func(s metricsScrape) bool {
		got := settlementSeries(s)
		for _, name := range checks {
			if v, ok := got[name]; !ok || v != 0 {
				return false
			}
		}
		return len(got) == len(checks)
	})
	if ts := s.value("sale_settlement_last_proof_timestamp_seconds", nil); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("sale_settlement_last_proof_timestamp_seconds = %v", ts)
	}
	if s.value("sale_settlement_duration_seconds", nil) < 1 {
		t.Error("sale_settlement_duration_seconds counts no proof")
	}

	var saleID int64
	if err := db.QueryRowContext(context.Background(),
		`UPDATE sales SET items_sold = items_sold + 1 WHERE started_at <= now() AND ended_at > now() RETURNING id`).Scan(&saleID); err != nil {
		t.Fatal(err)
	}
	awaitScrape(t, inst.URL, "the drifted counter", func(s metricsScrape) bool {
		got := settlementSeries(s)
		for _, name := range checks {
			want := 0.0
			if name == invariants.CheckSaleItemsSold {
				want = 1
			}
			if got[name] != want {
				return false
			}
		}
		return true
	})
	if !strings.Contains(inst.log.String(), `"msg":"sale settlement violation","sale_id":`+itoa(saleID)) {
		t.Errorf("violation not logged:\n%s", inst.log)
	}
}

// TestSettlementOneInstance: of two instances sharing PostgreSQL and Redis,
// one proves the running sale; the other's lock attempt is contended and it
// exports no findings.
func TestSettlementOneInstance(t *testing.T) {
	AwayFromTheHour(time.Minute) // both instances see the same running sale
	e := MustEnv(t, env{"SETTLEMENT_INTERVAL": "1h"})
	a, b := MustStart(t, e), MustStart(t, e)
	var scrapes []metricsScrape
	for _, inst := range []*instance{a, b} {
		scrapes = append(scrapes, awaitScrape(t, inst.URL, "a settlement lock attempt", func(s metricsScrape) bool {
			return s.value("redis_lock_attempts_total", l("lock_type", "settlement")) >= 1
		}))
	}
	proofs, exporting := 0.0, 0
	for _, s := range scrapes {
		proofs += s.value("sale_settlement_duration_seconds", nil)
		if len(settlementSeries(s)) > 0 {
			exporting++
		}
	}
	contended := scrapes[0].value("redis_lock_failure_total", l("lock_type", "settlement", "reason", "contended")) +
		scrapes[1].value("redis_lock_failure_total", l("lock_type", "settlement", "reason", "contended"))
	if proofs != 1 || exporting != 1 || contended != 1 {
		t.Errorf("%v proofs, %d instances exporting findings, %v contended attempts; want 1, 1, 1", proofs, exporting, contended)
	}
}

func TestSettlementIntervalConfig(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil || cfg.SettlementInterval != time.Minute {
		t.Errorf("default: %v, %v; want 1m", cfg.SettlementInterval, err)
	}
	_, err = loadConfig(func(k string) string { return map[string]string{"SETTLEMENT_INTERVAL": "10ms"}[k] })
	if err == nil || !strings.Contains(err.Error(), "SETTLEMENT_INTERVAL must be a duration of at least 100ms") {
		t.Errorf("SETTLEMENT_INTERVAL=10ms: %v", err)
	}
}
