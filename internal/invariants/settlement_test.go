package invariants_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/invariants"
	"github.com/flashsale/flashsale/internal/redis"
	"github.com/flashsale/flashsale/internal/testenv"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// settler is one instance's settlement proof, read through an SDK meter
// provider and a manual reader: the pipeline the service exports from.
type settler struct {
	*invariants.Settler
	reader *sdkmetric.ManualReader
	log    *testenv.Buffer
}

// mustSettler returns a Settler over db whose lock, when redisURL is not
// empty, is the Redis settlement lock under prefix.
func mustSettler(t *testing.T, db *sql.DB, redisURL, prefix string) *settler {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	s := &settler{reader: reader, log: &testenv.Buffer{}}
	opts := invariants.SettlerOptions{
		Interval: time.Hour, FinalDelay: time.Second, MeterProvider: mp,
		Logger: slog.New(slog.NewJSONHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if redisURL != "" {
		c, err := redis.Open(redisURL, redis.Options{PoolSize: 2, MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if opts.Locker, err = redis.NewSettlementLock(c, prefix, mp); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if s.Settler, err = invariants.NewSettler(db, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// exported is one collection of the settlement instruments.
type exported struct {
	violations map[string]int64 // nil when the series are absent
	lastProof  float64
	proofs     uint64 // proofs timed by sale_settlement_duration_seconds
}

func (s *settler) collect(t *testing.T) exported {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var e exported
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				if m.Name != "sale_settlement_violations" {
					continue
				}
				for _, p := range d.DataPoints {
					check, ok := p.Attributes.Value("check")
					if !ok || p.Attributes.Len() != 1 {
						t.Errorf("violation series with attributes %v", p.Attributes.ToSlice())
					}
					if e.violations == nil {
						e.violations = map[string]int64{}
					}
					e.violations[check.AsString()] = p.Value
				}
			case metricdata.Gauge[float64]:
				if m.Name == "sale_settlement_last_proof_timestamp_seconds" && len(d.DataPoints) == 1 {
					e.lastProof = d.DataPoints[0].Value
				}
			case metricdata.Histogram[float64]:
				if m.Name == "sale_settlement_duration_seconds" {
					for _, p := range d.DataPoints {
						e.proofs += p.Count
					}
				}
			}
		}
	}
	return e
}

// wantViolations checks that every check is exported, with the counts of
// want and 0 for the others.
func wantViolations(t *testing.T, got map[string]int64, want map[string]int64) {
	t.Helper()
	if got == nil {
		t.Fatal("no sale_settlement_violations series")
	}
	for _, name := range invariants.CheckNames() {
		if got[name] != want[name] {
			t.Errorf("sale_settlement_violations{check=%q} = %d, want %d", name, got[name], want[name])
		}
	}
	if len(got) != len(invariants.CheckNames()) {
		t.Errorf("series %v, want one per check %v", got, invariants.CheckNames())
	}
}

func TestSettlerExportsZeroForConsistentSale(t *testing.T) {
	db := mustSale(t, 5, 2)
	redisURL, prefix := testenv.MustRedis(t)
	s := mustSettler(t, db, redisURL, prefix)
	if e := s.collect(t); e.violations != nil || e.lastProof != 0 {
		t.Fatalf("before any proof: %+v, want no violation series and last proof 0", e)
	}
	before := time.Now()
	if err := s.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := s.collect(t)
	wantViolations(t, e.violations, nil)
	if e.lastProof < float64(before.Unix()) || e.proofs != 1 {
		t.Errorf("last proof %v (settled after %v), %d proofs timed, want 1", e.lastProof, before.Unix(), e.proofs)
	}
	if strings.Contains(s.log.String(), `"level":"ERROR"`) {
		t.Errorf("errors logged for a consistent sale:\n%s", s.log)
	}
}

// TestSettlerExportsPlantedViolations breaks a running sale in the database
// behind the service's back and expects the proof's series to count each
// breach, and each to be logged at ERROR.
func TestSettlerExportsPlantedViolations(t *testing.T) {
	db := mustSale(t, 5, 2)
	// The counter drifts, an accepted item leaves its open cart, and bob's
	// purchase moves into dave's cart (both carts' results then disagree).
	mustExec(t, db, `UPDATE sales SET items_sold = items_sold - 1 WHERE id = $1`, saleID)
	mustExec(t, db, `UPDATE carts SET item_ids = array_remove(item_ids, $1) WHERE code = 'code-carol'`, item(4))
	mustExec(t, db, `UPDATE purchases SET checkout_code = 'code-dave' WHERE item_id = $1`, item(3))
	s := mustSettler(t, db, "", "")
	if err := s.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		invariants.CheckSaleItemsSold:       1,
		invariants.CheckCartItemLost:        1,
		invariants.CheckPurchaseOutsideCart: 1,
		invariants.CheckCartResult:          2,
	}
	wantViolations(t, s.collect(t).violations, want)
	log := s.log.String()
	for name := range want {
		if !strings.Contains(log, fmt.Sprintf(`"level":"ERROR","msg":"sale settlement violation","sale_id":%d,"final":false,"check":%q`, saleID, name)) {
			t.Errorf("no ERROR line for check %s:\n%s", name, log)
		}
	}

	// Repaired, the next proof of the sale replaces the findings.
	mustExec(t, db, `UPDATE sales SET items_sold = items_sold + 1 WHERE id = $1`, saleID)
	mustExec(t, db, `UPDATE carts SET item_ids = item_ids || $1::bigint WHERE code = 'code-carol'`, item(4))
	mustExec(t, db, `UPDATE purchases SET checkout_code = 'code-bob-1' WHERE item_id = $1`, item(3))
	if err := s.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantViolations(t, s.collect(t).violations, nil)
}

// mustEndedSale adds a sale that ended an hour ago, due its final proof.
func mustEndedSale(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	id := int64(saleID - 7200)
	mustExec(t, db, `INSERT INTO sales (id, started_at, ended_at, total_items, user_item_limit)
		VALUES ($1, now() - interval '2 hours', now() - interval '1 hour', 5, 2)`, id)
	return id
}

// TestSettlerOneInstancePerSale runs two instances sharing Redis: the first
// to settle proves the running sale and the final proof of the ended one;
// the other proves neither, and exports no findings.
func TestSettlerOneInstancePerSale(t *testing.T) {
	db := mustSale(t, 5, 2)
	mustEndedSale(t, db)
	redisURL, prefix := testenv.MustRedis(t)
	a, b := mustSettler(t, db, redisURL, prefix), mustSettler(t, db, redisURL, prefix)
	ctx := context.Background()
	for _, s := range []*settler{a, b, a, b} {
		if err := s.Settle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ea, eb := a.collect(t), b.collect(t)
	if ea.proofs != 2 {
		t.Errorf("first instance: %d proofs, want 2 (running and final)", ea.proofs)
	}
	wantViolations(t, ea.violations, nil)
	if eb.proofs != 0 || eb.violations != nil || eb.lastProof != 0 {
		t.Errorf("second instance: %+v, want no proof and nothing exported", eb)
	}
	if !strings.Contains(a.log.String(), `"msg":"sale settled"`) {
		t.Errorf("final proof not logged:\n%s", a.log)
	}
}

// TestSettlerWithoutLock: without Redis every instance proves, the running
// sale at each Settle and an ended sale once.
func TestSettlerWithoutLock(t *testing.T) {
	db := mustSale(t, 5, 2)
	mustEndedSale(t, db)
	ctx := context.Background()
	t.Run("no lock configured", func(t *testing.T) {
		a, b := mustSettler(t, db, "", ""), mustSettler(t, db, "", "")
		for _, s := range []*settler{a, b, a, b} {
			if err := s.Settle(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i, s := range []*settler{a, b} {
			if e := s.collect(t); e.proofs != 3 {
				t.Errorf("instance %d: %d proofs, want 3 (running twice, final once)", i, e.proofs)
			}
		}
	})
	t.Run("Redis unreachable", func(t *testing.T) {
		s := mustSettler(t, db, fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)), "unreachable")
		if err := s.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		e := s.collect(t)
		if e.proofs != 2 {
			t.Errorf("%d proofs, want 2 (running and final)", e.proofs)
		}
		wantViolations(t, e.violations, nil)
	})
}

// TestSettlerFailedProofReleasesLock: a proof that cannot read the database
// releases its lock, so another instance proves the sale instead of nobody.
func TestSettlerFailedProofReleasesLock(t *testing.T) {
	db := mustSale(t, 5, 2)
	redisURL, prefix := testenv.MustRedis(t)
	a, b := mustSettler(t, db, redisURL, prefix), mustSettler(t, db, redisURL, prefix)
	ctx := context.Background()
	mustExec(t, db, `ALTER TABLE carts RENAME TO carts_away`)
	if err := a.Settle(ctx); err == nil {
		t.Fatal("Settle succeeded without the carts table")
	}
	mustExec(t, db, `ALTER TABLE carts_away RENAME TO carts`)
	if err := b.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if ea, eb := a.collect(t), b.collect(t); ea.proofs != 0 || ea.violations != nil || eb.proofs != 1 {
		t.Errorf("failed instance %+v, other %+v: want the other to prove the sale", ea, eb)
	}
}
