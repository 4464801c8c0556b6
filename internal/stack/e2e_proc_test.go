package stack

// Processes of the end-to-end test (e2e_test.go): start, watch, stop, and the tail of
// their output for failure messages.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// tailBuffer keeps the last max bytes written to it. Safe for concurrent use.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.dropped += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// tail returns the last n lines, leaving out those that contain skip (unless empty).
func (b *tailBuffer) tail(n int, skip string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var lines []string
	skipped := 0
	for _, l := range strings.Split(strings.TrimRight(string(b.buf), "\n"), "\n") {
		if skip != "" && strings.Contains(l, skip) {
			skipped++
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if skipped > 0 {
		lines = append(lines, fmt.Sprintf("(%d lines containing %q left out)", skipped, skip))
	}
	return strings.Join(lines, "\n")
}

// proc is a child process whose output goes to a tailBuffer.
type proc struct {
	*testenv.Process
	skip string // output lines containing it are left out of failure messages
	out  *tailBuffer
}

// startProc starts bin with args and env (the whole environment: nothing is inherited)
// in dir. The process is stopped (SIGTERM, then SIGKILL) and waited for when owner ends
// (the top-level test, so that a process started in a subtest outlives it), and the
// tail of its output is logged if owner failed. t is the running (sub)test.
func startProc(t, owner *testing.T, name, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &tailBuffer{max: 256 << 10}}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	var err error
	if p.Process, err = testenv.StartProcess(name, cmd); err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() {
		p.stop(owner, 15*time.Second)
		if owner.Failed() {
			owner.Logf("---- %s (pid %d) output, last lines ----\n%s\n---- end of %s output ----",
				name, p.Pid(), p.out.tail(80, p.skip), name)
		}
	})
	return p
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs and waits. Idempotent.
func (p *proc) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	if !p.Stop(grace) {
		t.Logf("%s did not exit within %s of SIGTERM: killed it", p.Name, grace)
	}
}

// describeExit is a failure message for a process that ended too early.
func (p *proc) describeExit() string {
	_, err := p.Exited()
	return fmt.Sprintf("%s exited unexpectedly (%v); its last output:\n%s", p.Name, err, p.out.tail(40, p.skip))
}

// ports hands out free loopback TCP ports, never the same one twice in a test.
type ports struct {
	t    *testing.T
	used map[int]bool
}

func (pp *ports) next() int {
	pp.t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			pp.t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !pp.used[port] {
			pp.used[port] = true
			return port
		}
	}
	pp.t.Fatal("free port: no new port after 50 tries")
	return 0
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// baseEnv is the environment of every child process: PATH, HOME and TMPDIR only, so that
// the caller's OTEL_*, DATABASE_URL, collector variables and the like cannot leak in.
func baseEnv(extra ...string) []string {
	env := []string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// lookBinary finds a server binary: $envVar when set (it must then be executable), else
// def on PATH. A missing binary skips the test, or fails it when
// FLASHSALE_REQUIRE_SERVICES=1.
func lookBinary(t *testing.T, envVar, def, hint string) string {
	t.Helper()
	if v := os.Getenv(envVar); v != "" {
		path, err := exec.LookPath(v)
		if err != nil {
			t.Fatalf("%s=%s: %v", envVar, v, err)
		}
		return path
	}
	var why string
	if def == "" {
		why = fmt.Sprintf("%s is not set (%s)", envVar, hint)
	} else if path, err := exec.LookPath(def); err == nil {
		return path
	} else {
		why = fmt.Sprintf("%s is not set and %q is not on PATH (%s)", envVar, def, hint)
	}
	if os.Getenv("FLASHSALE_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s; FLASHSALE_REQUIRE_SERVICES=1 makes this a failure", why)
	}
	t.Skipf("%s: skipping the end-to-end stack test", why)
	return ""
}

// httpStatus GETs url and returns the status code.
func httpStatus(url string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitFor polls cond every 250ms (growing to 1s) until it holds, and fails the test
// (naming what it waited for and cond's last status) after timeout, or as soon as one of
// the watched processes exits. It returns how long it waited.
func waitFor(t *testing.T, timeout time.Duration, what string, watch []*proc, cond func() (ok bool, status string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	interval := 250 * time.Millisecond
	for {
		ok, status := cond()
		if ok {
			return time.Since(start)
		}
		for _, p := range watch {
			if p == nil { // not started yet
				continue
			}
			if done, _ := p.Exited(); done {
				t.Fatalf("waiting for %s: %s", what, p.describeExit())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last status: %s", timeout, what, status)
		}
		time.Sleep(interval)
		interval = min(interval*2, time.Second)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveCommands()
	os.Exit(code)
}
