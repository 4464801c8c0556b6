package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
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
	// serverDuration is the semantic-convention http.server.request.duration,
	// recorded here from the same measurement as requestDuration (otelhttp
	// keeps the spans, without instruments of its own).
	serverDuration httpconv.ServerRequestDuration

	checkoutAttempts metric.Int64Counter
	checkoutSuccess  metric.Int64Counter
	checkoutFailure  metric.Int64Counter
	purchaseAttempts metric.Int64Counter
	purchaseSuccess  metric.Int64Counter
	purchaseFailure  metric.Int64Counter
	itemsSold        metric.Int64Counter

	requestAttrs optionCache[requestKey, requestOpts]
	reasonAttrs  optionCache[string, []metric.AddOption]
}

// optionCache holds measurement options built once per key, for keys from
// a bounded set. Unlike a sync.Map, a lookup boxes nothing: recording a
// measurement allocates nothing once its options are built.
type optionCache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

// get returns the options of k, built by build the first time.
func (c *optionCache[K, V]) get(k K, build func(K) V) V {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v
	}
	if c.m == nil {
		c.m = map[K]V{}
	}
	v = build(k)
	c.m[k] = v
	return v
}

// requestKey identifies the attribute sets of one kind of request. Each
// field comes from a bounded set.
type requestKey struct {
	route     string // the pattern's path; "" when no route matched
	method    string // the catalog's method label (normalizeMethod)
	semMethod string // the semantic conventions' method: upper case, or "_OTHER"
	status    int
	proto     string // the HTTP version, "1.0", "1.1" or "2.0"
	https     bool
}

// requestOpts are the attribute options of one kind of request: the
// catalog's labels and the semantic-convention attributes, as the slices the
// instruments take (a slice passed on is not allocated again per call).
type requestOpts struct {
	catalogRecord, semconvRecord []metric.RecordOption
	catalogAdd                   []metric.AddOption
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
	m.serverDuration, err = httpconv.NewServerRequestDuration(meter,
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10))
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

// recordRequest records one API request, which took elapsed, in the
// catalog's request instruments and in http.server.request.duration, with
// attribute sets built once per kind of request.
func (m *metrics) recordRequest(ctx context.Context, r *http.Request, status int, elapsed time.Duration) {
	key := requestKey{status: status, https: r.TLS != nil}
	// The version as otelhttp reads it ("1.1", "2.0"): net/http accepts
	// only HTTP/1.d and HTTP/2.0, so the set is bounded.
	_, key.proto, _ = strings.Cut(r.Proto, "/")
	if _, p, ok := strings.Cut(r.Pattern, " "); ok {
		key.route = p
	}
	key.method, key.semMethod = normalizeMethod(r.Method), normalizeMethod(strings.ToUpper(r.Method))
	if key.semMethod == methodOther {
		key.semMethod = "_OTHER"
	}
	opts := m.requestAttrs.get(key, requestKey.opts)
	s := elapsed.Seconds()
	m.requestDuration.Record(ctx, s, opts.catalogRecord...)
	m.requests.Add(ctx, 1, opts.catalogAdd...)
	m.serverDuration.Float64Histogram.Record(ctx, s, opts.semconvRecord...)
}

// opts builds the attribute sets of k.
func (k requestKey) opts() requestOpts {
	route, scheme := k.route, "http"
	if route == "" {
		route = unmatchedLabel
	}
	if k.https {
		scheme = "https"
	}
	semconvAttrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(k.semMethod),
		semconv.URLScheme(scheme),
		semconv.NetworkProtocolName("http"),
		semconv.NetworkProtocolVersion(k.proto),
		semconv.HTTPResponseStatusCode(k.status),
	}
	if k.route != "" {
		semconvAttrs = append(semconvAttrs, semconv.HTTPRoute(k.route))
	}
	catalog := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("handler", route),
		attribute.String("method", k.method),
		attribute.String("status_code", strconv.Itoa(k.status)),
	))
	return requestOpts{
		catalogRecord: []metric.RecordOption{catalog},
		catalogAdd:    []metric.AddOption{catalog},
		semconvRecord: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(semconvAttrs...))},
	}
}

// reason returns the attribute options of a failure reason, an error code.
func (m *metrics) reason(code string) []metric.AddOption {
	return m.reasonAttrs.get(code, func(code string) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", code)))}
	})
}
