//go:build linux

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestListenerFailureEndsRun checks that a listener whose Serve fails after
// start-up ends run with that error (so the process exits non-zero), and
// promptly, both once the service is ready and while it is still waiting for
// an unreachable PostgreSQL.
func TestListenerFailureEndsRun(t *testing.T) {
	for _, tt := range []struct {
		name     string
		database func(t *testing.T) string
	}{
		{"database up", func(t *testing.T) string { return testenv.MustDatabase(t) }},
		{"database down", func(t *testing.T) string {
			// A port nothing listens on: start-up keeps waiting for it.
			return "postgres://flashsale@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/postgres?sslmode=disable&connect_timeout=1"
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := MustEnv(t, env{"DATABASE_URL": tt.database(t), "LOG_LEVEL": "info"})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			log := &testenv.Buffer{}
			done := make(chan error, 1)
			addr := make(chan string, 1)
			go func() { done <- run(ctx, func(k string) string { return e[k] }, log, func(a string) { addr <- a }) }()
			var a string
			select {
			case a = <-addr:
			case err := <-done:
				t.Fatalf("run: %v\n%s", err, log)
			case <-time.After(30 * time.Second):
				t.Fatalf("instance did not listen\n%s", log)
			}
			if tt.name == "database up" {
				waitReady(t, "http://"+a, log)
			} else {
				waitLog(t, log, "startup: database not ready")
			}
			failListener(t, a)
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "serve") {
					t.Fatalf("run returned %v, want the listener's error\n%s", err, log)
				}
				t.Logf("run returned: %v", err)
			case <-time.After(30 * time.Second):
				cancel()
				t.Fatalf("run did not return after its listener failed\n%s", log)
			}
		})
	}
}

// waitReady waits until the instance at base answers /readyz 200.
func waitReady(t *testing.T, base string, log *testenv.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, _ := probeStatus(base + "/readyz"); st == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance not ready\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func probeStatus(url string) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitLog waits until the instance's log holds s.
func waitLog(t *testing.T, log *testenv.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log\n%s", s, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failListener makes the listening socket of addr in this process fail:
// shutdown(2) on a listening socket wakes its pending accept with EINVAL, an
// error net/http does not retry, so the server's Serve returns it.
func failListener(t *testing.T, addr string) {
	t.Helper()
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fds {
		fd, err := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		if listening, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || listening != 1 {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*syscall.SockaddrInet4); ok && in4.Port == want.Port && net.IP(in4.Addr[:]).Equal(want.IP) {
			if err := syscall.Shutdown(fd, syscall.SHUT_RDWR); err != nil {
				t.Fatalf("shutdown of the listener: %v", err)
			}
			return
		}
	}
	t.Fatal(errors.New("no listening socket for " + addr))
}
