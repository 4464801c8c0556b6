package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
)

// OTLPSink is an OTLP/HTTP endpoint that discards: it answers every POST
// (/v1/traces, /v1/metrics, /v1/logs) with 200 and an empty body — an empty
// protobuf Export*Response — after reading the request in full, and counts
// what it received; GET /stats returns the counts as JSON. It is the
// cheapest backend, for measuring what export costs the service: the
// benchmarks of cmd/flashsale serve it in-process, scripts/bench.sh as
// scripts/otlpsink.
type OTLPSink struct {
	mu    sync.Mutex
	paths map[string]*OTLPCount
}

// OTLPCount is what a sink received on one path.
type OTLPCount struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
}

// NewOTLPSink returns a sink that has received nothing.
func NewOTLPSink() *OTLPSink { return &OTLPSink{paths: map[string]*OTLPCount{}} }

func (s *OTLPSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Counts())
	case r.Method == http.MethodPost:
		n, _ := io.Copy(io.Discard, r.Body)
		s.add(r.URL.Path, n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

func (s *OTLPSink) add(path string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.paths[path]
	if c == nil {
		c = &OTLPCount{}
		s.paths[path] = c
	}
	c.Requests++
	c.Bytes += n
}

// Counts returns what the sink received so far, per request path.
func (s *OTLPSink) Counts() map[string]OTLPCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]OTLPCount, len(s.paths))
	for p, c := range s.paths {
		out[p] = *c
	}
	return out
}
