package httpapi

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// reasonNothingAvailable is the purchase failure reason of a purchase that
// answered 200 but sold nothing (every item sold out or over the user limit).
const reasonNothingAvailable = "nothing_available"

// metrics holds the catalog instruments of the API. Their names are kept
// verbatim by the Prometheus exporter. No attribute ever holds a user id, an
// item id or a code: every attribute value comes from a bounded set.
type metrics struct {
	requestDuration metric.Float64Histogram
	requests        metric.Int64Counter

	checkoutAttempts metric.Int64Counter
	checkoutSuccess  metric.Int64Counter
	checkoutFailure  metric.Int64Counter
	purchaseAttempts metric.Int64Counter
	purchaseSuccess  metric.Int64Counter
	purchaseFailure  metric.Int64Counter
	itemsSold        metric.Int64Counter

	requestAttrs sync.Map // requestKey -> metric.MeasurementOption
	reasonAttrs  sync.Map // reason -> metric.MeasurementOption
}

// requestKey identifies one attribute set of the request instruments.
type requestKey struct {
	handler string
	method  string
	status  int
}

// newMetrics creates the instruments on meter.
func newMetrics(meter metric.Meter) (*metrics, error) {
	m := &metrics{}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	var err error
	m.requestDuration, err = meter.Float64Histogram("http_request_duration_seconds",
		metric.WithDescription("Duration of API requests by route, method and status."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
	errs = append(errs, err)
	m.requests = counter("http_requests_total", "API requests by route, method and status.")
	m.checkoutAttempts = counter("checkout_attempts_total", "Checkout requests received.")
	m.checkoutSuccess = counter("checkout_success_total", "Checkouts that added an item to a cart.")
	m.checkoutFailure = counter("checkout_failure_total", "Checkouts that failed, by error code.")
	m.purchaseAttempts = counter("purchase_attempts_total", "Purchase requests received.")
	m.purchaseSuccess = counter("purchase_success_total", "Purchases that bought at least one item.")
	m.purchaseFailure = counter("purchase_failure_total", "Purchases that bought nothing, by error code or nothing_available.")
	m.itemsSold = counter("sale_items_sold_total", "Items sold by this instance.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Counters without labels start at 0, so that rate() and increase() see
	// the first requests of a fresh instance.
	ctx := context.Background()
	for _, c := range []metric.Int64Counter{m.checkoutAttempts, m.checkoutSuccess, m.purchaseAttempts, m.purchaseSuccess, m.itemsSold} {
		c.Add(ctx, 0)
	}
	return m, nil
}

// recordRequest records one API request in the request instruments.
func (m *metrics) recordRequest(ctx context.Context, handler, method string, status int, elapsed time.Duration) {
	key := requestKey{handler: handler, method: normalizeMethod(method), status: status}
	v, ok := m.requestAttrs.Load(key)
	if !ok {
		v, _ = m.requestAttrs.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("handler", key.handler),
			attribute.String("method", key.method),
			attribute.String("status_code", strconv.Itoa(key.status)),
		)))
	}
	opt := v.(metric.MeasurementOption)
	m.requestDuration.Record(ctx, elapsed.Seconds(), opt)
	m.requests.Add(ctx, 1, opt)
}

// reason returns the attribute option of a failure reason, an error code.
func (m *metrics) reason(code string) metric.MeasurementOption {
	if v, ok := m.reasonAttrs.Load(code); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := m.reasonAttrs.LoadOrStore(code, metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", code))))
	return v.(metric.MeasurementOption)
}
