//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestMemoryLimit starts the service binary in a memory cgroup of 300 MiB,
// as a container with that limit would, and reads the Go memory limit it runs
// with from its start-up log and from go_gc_gomemlimit_bytes (the runtime's
// own reading) on /metrics: 90% of the cgroup's, unless GOMEMLIMIT or
// AUTOMEMLIMIT says otherwise; none without a cgroup limit. The database and
// Redis are unreachable: the limit is set before they are needed, and
// /metrics answers while start-up waits for them.
func TestMemoryLimit(t *testing.T) {
	const cgroupLimit = 300 << 20
	cgroup := mustMemoryCgroup(t, cgroupLimit)
	bin := testenv.ServiceBinary(t)
	for _, tt := range []struct {
		name     string
		noCgroup bool     // started in the test's own cgroup, not the 300 MiB one
		env      []string // added to the environment
		bytes    int64    // the limit in effect
		from     string   // the start-up log's memory_limit.from
	}{
		{name: "cgroup", bytes: cgroupLimit * 9 / 10, from: "cgroup"},
		{name: "GOMEMLIMIT wins", env: []string{"GOMEMLIMIT=100MiB"}, bytes: 100 << 20, from: "GOMEMLIMIT"},
		{name: "AUTOMEMLIMIT ratio", env: []string{"AUTOMEMLIMIT=0.5"}, bytes: cgroupLimit / 2, from: "cgroup"},
		{name: "AUTOMEMLIMIT off", env: []string{"AUTOMEMLIMIT=off"}, bytes: math.MaxInt64, from: "none"},
		{name: "no cgroup limit", noCgroup: true, bytes: math.MaxInt64, from: "none"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := memlimit.FromCgroup(); tt.noCgroup && !errors.Is(err, memlimit.ErrNoLimit) {
				t.Skipf("the tests' own cgroup has a memory limit (or cannot be read: %v)", err)
			}
			addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
			cmd := exec.Command(bin)
			if !tt.noCgroup {
				// The shell joins the cgroup, then becomes the service: the
				// limit holds from the service's first instruction.
				cmd = exec.Command("/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cgroup, bin)
			}
			cmd.Env = append([]string{
				"HTTP_ADDR=" + addr,
				"DATABASE_URL=postgres://flashsale@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/none?sslmode=disable&connect_timeout=1",
				"REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/0",
				"LOG_LEVEL=info", "SHUTDOWN_DELAY=0",
			}, tt.env...)
			p := testenv.MustStartProcess(t, "flashsale", cmd)

			if got := gomemlimitMetric(t, "http://"+addr, p); got != float64(tt.bytes) {
				t.Errorf("go_gc_gomemlimit_bytes %g, want %d", got, tt.bytes)
			}
			var start struct {
				Msg         string
				MemoryLimit struct {
					Bytes int64
					From  string
				} `json:"memory_limit"`
			}
			sc := bufio.NewScanner(strings.NewReader(p.Out.String()))
			for sc.Scan() && start.Msg != "starting" {
				_ = json.Unmarshal(sc.Bytes(), &start)
			}
			bytes := start.MemoryLimit.Bytes
			if tt.from == "none" && bytes == 0 {
				bytes = math.MaxInt64 // not logged: there is none
			}
			if start.Msg != "starting" || bytes != tt.bytes || start.MemoryLimit.From != tt.from {
				t.Errorf("start-up log: memory_limit %+v, want %d from %s\n%s", start.MemoryLimit, tt.bytes, tt.from, p.Out)
			}
			if !p.Stop(15 * time.Second) {
				t.Errorf("the service did not stop on SIGTERM")
			}
		})
	}
}

// gomemlimitMetric reads go_gc_gomemlimit_bytes from base's /metrics once
// it answers, unless p exits first.
func gomemlimitMetric(t *testing.T, base string, p *testenv.Process) float64 {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if done, err := p.Exited(); done {
			t.Fatalf("the service exited: %v\n%s", err, p.Out)
		}
		resp, err := http.Get(base + "/metrics")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/metrics does not answer: %v\n%s", base, err, p.Out)
		}
	}
	s := scrapeMetrics(t, base)
	if s["go_gc_gomemlimit_bytes"] == nil {
		t.Fatalf("no go_gc_gomemlimit_bytes on %s/metrics\n%s", base, p.Out)
	}
	return s.value("go_gc_gomemlimit_bytes", nil)
}

// mustMemoryCgroup creates a memory cgroup limited to limit bytes under the
// test process's own (nested, so it works wherever the tests run) and
// returns its directory, removed when the test ends. It skips the test when
// none can be made: not root, a read-only cgroup file system, cgroup v2
// without the memory controller for the children of the test's cgroup.
func mustMemoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no cgroups: %v", err)
	}
	// Lines are "hierarchy:controllers:path". cgroup v1's memory hierarchy
	// ("4:memory:/path") wins over v2's ("0::/path"), as it does for the
	// service when both are mounted.
	var parent, limitFile string
	for line := range strings.Lines(string(raw)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		switch {
		case len(f) < 3:
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			parent, limitFile = filepath.Join("/sys/fs/cgroup/memory", f[2]), "memory.limit_in_bytes"
		case f[0] == "0" && f[1] == "" && limitFile == "":
			parent, limitFile = filepath.Join("/sys/fs/cgroup", f[2]), "memory.max"
		}
	}
	if parent == "" {
		t.Skipf("no memory cgroup in /proc/self/cgroup:\n%s", raw)
	}
	dir, err := os.MkdirTemp(parent, "flashsale-test-")
	if err != nil {
		t.Skipf("cannot create a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The cgroup can be removed once its processes have exited.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err := os.Remove(dir); err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Errorf("remove the test cgroup: %v", err)
				}
				return
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		t.Skipf("cannot limit the memory of a cgroup: %v", err)
	}
	return dir
}
