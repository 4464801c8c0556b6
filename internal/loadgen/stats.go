package loadgen

import (
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes: longer
// than any -timeout, so nothing is clipped in practice. Run totals keep three
// significant digits; the per-second histograms of the timeline two, which
// keeps them a few kilobytes each.
const (
	histMaxMicros      = int64(10 * time.Minute / time.Microsecond)
	histDigits         = 3
	histDigitsPerSec   = 2
	microsPerMilli     = 1000.0
	timelineResolution = time.Second
)

// recorder collects every request of the load: totals per endpoint, and per
// second of the run for the timeline. One mutex guards it: at the rates one
// machine can drive, it is not the bottleneck.
type recorder struct {
	start time.Time

	mu        sync.Mutex
	endpoints map[Endpoint]*endpointStats
	seconds   []*secondStats
	live      Totals
	first     time.Time // when the earliest request was meant to start
}

// endpointStats are one endpoint's totals.
type endpointStats struct {
	hist     *hdrhistogram.Histogram
	statuses map[int]int64
	codes    map[string]int64
}

// secondStats are what completed within one second of the run.
type secondStats struct {
	requests map[Endpoint]int64
	hists    map[Endpoint]*hdrhistogram.Histogram
	errors   int64 // 5xx and requests without an answer
	sold     int   // items sold as last observed in this second; -1 when not observed
}

// Totals count the requests of the run by kind of answer.
type Totals struct {
	Requests     int64   `json:"requests"`
	RPS          float64 `json:"rps"`           // requests per second of the load
	OK           int64   `json:"ok"`            // 2xx
	Rejected     int64   `json:"rejected"`      // 4xx: the service said no, as it must when items run out
	Unavailable  int64   `json:"unavailable"`   // 503: the service is degraded but says so
	ServerErrors int64   `json:"server_errors"` // 5xx other than 503: a bug in the service; fails the run
	NoAnswer     int64   `json:"no_answer"`     // timeouts and transport errors
}

// newRecorder returns a recorder whose timeline starts at start.
func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, endpoints: map[Endpoint]*endpointStats{}}
}

func newHist(digits int) *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, digits) }

func recordMicros(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), 1), histMaxMicros)
	_ = h.RecordValue(us) // in range by construction
}

// record adds one request that was meant to start at start and ended at end.
func (r *recorder) record(ep Endpoint, start, end time.Time, res Response) {
	d := end.Sub(start)
	r.mu.Lock()
	defer r.mu.Unlock()

	es := r.endpoints[ep]
	if es == nil {
		es = &endpointStats{hist: newHist(histDigits), statuses: map[int]int64{}, codes: map[string]int64{}}
		r.endpoints[ep] = es
	}
	recordMicros(es.hist, d)
	if res.Status != 0 {
		es.statuses[res.Status]++
	}
	if res.Code != "" {
		es.codes[res.Code]++
	}

	s := r.second(end)
	s.requests[ep]++
	h := s.hists[ep]
	if h == nil {
		h = newHist(histDigitsPerSec)
		s.hists[ep] = h
	}
	recordMicros(h, d)

	if r.first.IsZero() || start.Before(r.first) {
		r.first = start
	}
	r.live.Requests++
	switch {
	case res.Status == 0:
		r.live.NoAnswer++
		s.errors++
	case res.Status == 503:
		r.live.Unavailable++
		s.errors++
	case res.Status >= 500:
		r.live.ServerErrors++
		s.errors++
	case res.Status >= 400:
		r.live.Rejected++
	case res.Status >= 200 && res.Status < 300:
		r.live.OK++
	}
}

// observeSold notes the sale's items sold as read at t.
func (r *recorder) observeSold(t time.Time, sold int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.second(t).sold = sold
}

// second returns the bucket of time t, growing the timeline to reach it.
// Callers hold r.mu.
func (r *recorder) second(t time.Time) *secondStats {
	i := max(int(t.Sub(r.start)/timelineResolution), 0)
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, &secondStats{
			requests: map[Endpoint]int64{}, hists: map[Endpoint]*hdrhistogram.Histogram{}, sold: -1,
		})
	}
	return r.seconds[i]
}

// counts returns the running totals.
func (r *recorder) counts() Totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

// latencyMs summarises a histogram in milliseconds.
func latencyMs(h *hdrhistogram.Histogram) Latency {
	q := func(p float64) float64 { return float64(h.ValueAtPercentile(p)) / microsPerMilli }
	return Latency{
		P50: q(50), P90: q(90), P99: q(99), P999: q(99.9),
		Max: float64(h.Max()) / microsPerMilli, Mean: h.Mean() / microsPerMilli,
	}
}

// firstRequest returns when the earliest request was meant to start; the
// recorder's start when none was recorded.
func (r *recorder) firstRequest() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first.IsZero() {
		return r.start
	}
	return r.first
}

// summary returns the endpoints' totals, in the order of a sale's flow, and
// the timeline.
// elapsed is the load's length, for the rates.
func (r *recorder) summary(elapsed time.Duration) ([]EndpointReport, []Second) {
	r.mu.Lock()
	defer r.mu.Unlock()
	eps := make([]EndpointReport, 0, len(r.endpoints))
	for ep, es := range r.endpoints {
		er := EndpointReport{
			Endpoint: string(ep),
			Requests: es.hist.TotalCount(),
			Latency:  latencyMs(es.hist),
			Statuses: map[string]int64{},
			Errors:   map[string]int64{},
		}
		if s := elapsed.Seconds(); s > 0 {
			er.RPS = float64(er.Requests) / s
		}
		for st, n := range es.statuses {
			er.Statuses[itoa(st)] = n
		}
		for code, n := range es.codes {
			er.Errors[code] = n
		}
		eps = append(eps, er)
	}
	slices.SortFunc(eps, func(a, b EndpointReport) int { return endpointOrder(a.Endpoint) - endpointOrder(b.Endpoint) })

	timeline := make([]Second, len(r.seconds))
	for i, s := range r.seconds {
		sec := Second{
			T: i, Requests: map[string]int64{}, P50Ms: map[string]float64{}, P99Ms: map[string]float64{}, Errors: s.errors,
		}
		for ep, n := range s.requests {
			sec.Requests[string(ep)] = n
		}
		for ep, h := range s.hists {
			sec.P50Ms[string(ep)] = float64(h.ValueAtPercentile(50)) / microsPerMilli
			sec.P99Ms[string(ep)] = float64(h.ValueAtPercentile(99)) / microsPerMilli
		}
		if s.sold >= 0 {
			sold := s.sold
			sec.ItemsSold = &sold
		}
		timeline[i] = sec
	}
	return eps, timeline
}

// endpointOrder sorts reports by the flow of a sale: checkout and purchase
// first, then reads, then administration.
func endpointOrder(ep string) int {
	order := []Endpoint{EndpointCheckout, EndpointPurchase, EndpointItems, EndpointSale, EndpointActiveSale, EndpointCreateSale}
	if i := slices.Index(order, Endpoint(ep)); i >= 0 {
		return i
	}
	return len(order)
}
