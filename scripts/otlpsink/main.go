// Command otlpsink serves testenv.OTLPSink, a discarding OTLP/HTTP receiver,
// for benchmarks (scripts/bench.sh): it answers every POST (/v1/traces,
// /v1/metrics, /v1/logs) with 200 and an empty body after reading the
// request in full, and counts what it received. GET /stats returns the
// counts as JSON.
//
//	go run ./scripts/otlpsink -addr 127.0.0.1:4318
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4318", "listen address")
	flag.Parse()

	sink := testenv.NewOTLPSink()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 5 * time.Second}
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
	b, _ := json.Marshal(sink.Counts())
	fmt.Printf("otlpsink: received %s\n", b)
}
