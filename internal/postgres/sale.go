package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/reading"
)

var _ flashsale.SaleStore = (*SaleStore)(nil)

// SaleStore implements flashsale.SaleStore.
type SaleStore struct {
	db  *DB
	reg metric.Registration
	// gauged is the active sale as the gauges read it: collections within
	// a second of each other (scrapes of several Prometheus servers, or a
	// flood of GET /metrics) share one query.
	gauged *reading.Cache[*flashsale.Sale]
}

// NewSaleStore returns a SaleStore and registers the sale_items_offered and
// sale_items_sold_current gauges, which read the active sale's authoritative
// counts (at most a second old) at each collection, so every instance reports
// the same values.
//
// The metric catalog (docs/TELEMETRY.md) names them sale_items_total and sale_items_sold. In OpenMetrics
// sale_items_sold is also the family of the counter sale_items_sold_total (one
// name cannot carry two families), and a gauge ending in _total breaks the
// exposition format's naming rules (promtool check metrics); so the gauges are
// exposed under these names and Prometheus records the catalog's names from them
// (prometheus/rules/flashsale-recording.yml) for the catalog's queries.
func NewSaleStore(db *DB, mp metric.MeterProvider) (*SaleStore, error) {
	s := &SaleStore{db: db}
	s.gauged = reading.New(func(ctx context.Context, _ string) (*flashsale.Sale, error) {
		return s.ActiveSale(ctx)
	}, reading.Options{}) // readings of at most a second
	var err error
	s.reg, err = registerSaleGauges(cmp.Or(mp, otel.GetMeterProvider()), func(ctx context.Context) (*flashsale.Sale, error) {
		return s.gauged.Get(ctx, "")
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Close unregisters the sale gauges.
func (s *SaleStore) Close() error { return s.reg.Unregister() }

// Item names and image URLs are generated set-based in the statement that
// creates the items, from the item's sequence number g; the item's id is
// $6 + g, $6 being flashsale.ItemID(sale, 0).
var qCreateSale = newQuery("insert", "sales", `
WITH sale AS (
    INSERT INTO sales (id, started_at, ended_at, total_items, user_item_limit)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO items (id, sale_id, name, image_url)
SELECT $6::bigint + g, sale.id,
       (ARRAY['Crimson','Azure','Golden','Silver','Midnight','Emerald','Ivory','Coral',
              'Amber','Onyx','Scarlet','Cobalt','Jade','Pearl','Copper','Violet'])[1 + g % 16]
       || ' ' ||
       (ARRAY['Sneakers','Backpack','Headphones','Watch','Jacket','Sunglasses','Lamp','Mug',
              'Keyboard','Speaker','Camera','Notebook','Scarf','Bottle','Umbrella','Wallet'])[1 + (g / 16) % 16]
       || ' #' || g,
       'https://img.flashsale.example/sales/' || sale.id || '/items/' || g || '.jpg'
FROM sale, generate_series(1, $4::integer) AS g`)

// CreateSale creates the sale and all its items in one statement, hence one
// transaction. Concurrent creators of the same sale id end up with one sale:
// the losers wait for the winner's commit and get created=false.
func (s *SaleStore) CreateSale(ctx context.Context, n flashsale.NewSale) (*flashsale.Sale, bool, error) {
	if err := n.Validate(); err != nil {
		return nil, false, err
	}
	id := flashsale.SaleID(n.Start)
	res, err := s.db.exec(ctx, s.db.sql, qCreateSale, id, n.Start, n.Start.Add(n.Duration), n.TotalItems, n.UserItemLimit, flashsale.ItemID(id, 0))
	if err != nil {
		return nil, false, fmt.Errorf("create sale %d: %w", id, translate(err))
	}
	created, err := res.RowsAffected()
	if err != nil {
		return nil, false, fmt.Errorf("create sale %d: %w", id, translate(err))
	}
	sale, err := s.Sale(ctx, id)
	return sale, created > 0, err
}

const saleColumns = `id, started_at, ended_at, total_items, items_sold, user_item_limit`

func scanSale(row *sql.Row) (*flashsale.Sale, error) {
	var s flashsale.Sale
	if err := row.Scan(&s.ID, &s.StartedAt, &s.EndedAt, &s.TotalItems, &s.ItemsSold, &s.UserItemLimit); err != nil {
		return nil, err
	}
	s.StartedAt, s.EndedAt = s.StartedAt.UTC(), s.EndedAt.UTC()
	return &s, nil
}

var qSale = newQuery("select", "sales", `SELECT `+saleColumns+` FROM sales WHERE id = $1`)

// Sale returns the sale with the given id, or ENotFound.
func (s *SaleStore) Sale(ctx context.Context, id int64) (*flashsale.Sale, error) {
	sale, err := scanSale(s.db.queryRow(ctx, s.db.sql, qSale, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.ENotFound, "no sale %d", id)
	} else if err != nil {
		return nil, fmt.Errorf("sale %d: %w", id, translate(err))
	}
	return sale, nil
}

var qActiveSale = newQuery("select", "sales", `SELECT `+saleColumns+` FROM sales
WHERE started_at <= now() AND ended_at > now() ORDER BY started_at DESC LIMIT 1`)

// ActiveSale returns the most recently started running sale by the database's
// clock, or ENotFound.
func (s *SaleStore) ActiveSale(ctx context.Context) (*flashsale.Sale, error) {
	sale, err := scanSale(s.db.queryRow(ctx, s.db.sql, qActiveSale))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.ENotFound, "no sale is running")
	} else if err != nil {
		return nil, fmt.Errorf("active sale: %w", translate(err))
	}
	return sale, nil
}

// The id range of a sale's items, from flashsale.ItemID(sale, 0) to
// ItemID(sale+1, 0), lets the primary key serve the listing.
var qItems = newQuery("select", "items", `SELECT id, name, image_url, sold FROM items
WHERE id > $1 AND id < $2 ORDER BY id OFFSET $3 LIMIT $4`)

// Items returns a page of a sale's items ordered by id.
func (s *SaleStore) Items(ctx context.Context, saleID int64, offset, limit int) ([]flashsale.Item, error) {
	rows, err := s.db.query(ctx, s.db.sql, qItems, flashsale.ItemID(saleID, 0), flashsale.ItemID(saleID+1, 0), offset, limit)
	if err != nil {
		return nil, fmt.Errorf("items of sale %d: %w", saleID, translate(err))
	}
	defer rows.Close()
	items := make([]flashsale.Item, 0, limit)
	for rows.Next() {
		it := flashsale.Item{SaleID: saleID}
		if err := rows.Scan(&it.ID, &it.Name, &it.ImageURL, &it.Sold); err != nil {
			return nil, fmt.Errorf("items of sale %d: %w", saleID, translate(err))
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("items of sale %d: %w", saleID, translate(err))
	}
	return items, nil
}

var qNow = newQuery("select", "none", `SELECT now()`)

// Now returns the database's clock.
func (s *SaleStore) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.db.queryRow(ctx, s.db.sql, qNow).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("database time: %w", translate(err))
	}
	return t, nil
}
