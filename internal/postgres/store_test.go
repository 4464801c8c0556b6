package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/postgres"
	"github.com/flashsale/flashsale/internal/testenv"
)

// stores are the adapters under test over one fresh database.
type stores struct {
	url       string
	db        *postgres.DB
	sql       *sql.DB
	sales     *postgres.SaleStore
	carts     *postgres.CartStore
	purchases *postgres.PurchaseStore
	epoch     time.Time // sales start a second apart before it
	nsales    int
}

// mustStores opens the stores over a fresh migrated database, or over url
// when it is not empty (a proxy in front of the test database).
func mustStores(tb testing.TB, url string) *stores {
	tb.Helper()
	if url == "" {
		url = testenv.MustDatabase(tb)
	}
	db, err := postgres.Open(url, postgres.Options{
		MaxOpenConns: 8, MaxIdleConns: 8,
		MeterProvider: metricnoop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	sales, err := postgres.NewSaleStore(db, metricnoop.NewMeterProvider())
	if err != nil {
		tb.Fatal(err)
	}
	s := &stores{
		url: url, db: db, sql: db.SQL(), sales: sales,
		epoch:     time.Now().Add(-time.Minute).Truncate(time.Second),
		carts:     postgres.NewCartStore(db, postgres.CartStoreOptions{TracerProvider: tracenoop.NewTracerProvider()}),
		purchases: postgres.NewPurchaseStore(db, postgres.PurchaseStoreOptions{}),
	}
	tb.Cleanup(func() {
		s.carts.Close()
		s.purchases.Close()
		sales.Close()
		db.Close()
	})
	return s
}

// mustSale creates a running sale of n items with a limit of limit per user;
// each sale of a test starts a second before the previous one.
func (s *stores) mustSale(tb testing.TB, n, limit int) *flashsale.Sale {
	tb.Helper()
	s.nsales++
	// A sale's id is its start second: counted from a fixed epoch, two
	// sales never share one, however slowly the test runs.
	start := s.epoch.Add(-time.Duration(s.nsales) * time.Second)
	sale, created, err := s.sales.CreateSale(context.Background(), flashsale.NewSale{Start: start, Duration: time.Hour, TotalItems: n, UserItemLimit: limit})
	if err != nil {
		tb.Fatal(err)
	} else if !created {
		tb.Fatalf("sale %d already existed", sale.ID)
	}
	return sale
}

// checkout asks the cart store for the user's checkout of item seq, decided
// by the store, with a code the cache would have named.
func (s *stores) checkout(tb testing.TB, sale *flashsale.Sale, user string, seq int, code string) (flashsale.CartAdd, error) {
	tb.Helper()
	return s.carts.Checkout(context.Background(), flashsale.Attempt{
		SaleID: sale.ID, UserID: user, ItemID: flashsale.ItemID(sale.ID, seq), Limit: sale.UserItemLimit,
		Code: code, NewCode: flashsale.NewCode(sale.ID),
	})
}

func (s *stores) mustCheckout(tb testing.TB, sale *flashsale.Sale, user string, seq int, code string) flashsale.CartAdd {
	tb.Helper()
	add, err := s.checkout(tb, sale, user, seq, code)
	if err != nil {
		tb.Fatalf("checkout of %s item %d: %v", user, seq, err)
	}
	return add
}

func (s *stores) count(tb testing.TB, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := s.sql.QueryRow(query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// soldFlags returns, per item of the result, whether it was sold.
func soldFlags(r flashsale.PurchaseResult) map[int64]bool {
	m := map[int64]bool{}
	for _, it := range r.Items {
		m[it.ID] = it.Sold
	}
	return m
}

// refuseMallory makes the database reject every row of user mallory written
// to table: a batch holding one fails as a whole.
func (s *stores) refuseMallory(tb testing.TB, table string) {
	tb.Helper()
	if _, err := s.sql.Exec(`
CREATE FUNCTION refuse_mallory() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.user_id = 'mallory' THEN RAISE EXCEPTION 'refused'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_mallory BEFORE INSERT ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION refuse_mallory();`); err != nil {
		tb.Fatal(err)
	}
}
