// Command otlpsink is a discarding OTLP/HTTP receiver for benchmarks
// (scripts/bench.sh): it answers every POST (/v1/traces, /v1/metrics,
// /v1/logs) with 200 and an empty body — an empty protobuf Export*Response —
// after reading the request in full, and counts what it received. GET /stats
// returns the counts as JSON.
//
//	go run ./scripts/otlpsink -addr 127.0.0.1:4318
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// counts is what the sink received, per request path.
type counts struct {
	mu    sync.Mutex
	paths map[string]*pathCount
}

type pathCount struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
}

func (c *counts) add(path string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.paths[path]
	if pc == nil {
		pc = &pathCount{}
		c.paths[path] = pc
	}
	pc.Requests++
	pc.Bytes += n
}

func (c *counts) snapshot() map[string]pathCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]pathCount, len(c.paths))
	for p, pc := range c.paths {
		out[p] = *pc
	}
	return out
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4318", "listen address")
	flag.Parse()

	c := &counts{paths: map[string]*pathCount{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.snapshot())
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		c.add(r.URL.Path, n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("otlpsink: listening on %s\n", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	b, _ := json.Marshal(c.snapshot())
	fmt.Printf("otlpsink: received %s\n", b)
}
