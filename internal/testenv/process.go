package testenv

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a child process of a test: the service, a collector, a
// database. Its output goes to Out unless the command says otherwise.
type Process struct {
	Name string
	Out  *Buffer
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been waited for
	err  error         // Wait's result, once done is closed
}

// StartProcess starts cmd. It is killed with the test binary should that die
// without running its cleanups; stopping it otherwise is the caller's.
func StartProcess(name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{Name: name, Out: &Buffer{}, cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.Out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.Out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// MustStartProcess starts cmd and stops it (SIGTERM, then SIGKILL after 15
// seconds) when the test ends. Callers that want a shorter or stricter stop
// call Stop in a cleanup of their own, which runs first.
func MustStartProcess(tb testing.TB, name string, cmd *exec.Cmd) *Process {
	tb.Helper()
	p, err := StartProcess(name, cmd)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if !p.Stop(15 * time.Second) {
			tb.Logf("%s did not exit within 15s of SIGTERM: killed", name)
		}
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how (nil: status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// State is how the process exited; nil while it runs.
func (p *Process) State() *os.ProcessState {
	select {
	case <-p.done:
		return p.cmd.ProcessState
	default:
		return nil
	}
}

// Signal sends sig, unless the process has exited.
func (p *Process) Signal(sig os.Signal) {
	if done, _ := p.Exited(); !done {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Wait waits up to timeout for the process to exit; false when it did not.
func (p *Process) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace, then kills; it reports whether
// the process exited within grace. It does nothing to an exited process.
func (p *Process) Stop(grace time.Duration) bool {
	p.Signal(syscall.SIGTERM)
	if p.Wait(grace) {
		return true
	}
	p.Kill()
	return false
}

// ServiceBinary builds cmd/flashsale once per test binary and returns its
// path: tests that kill, restart or signal the service run it as an
// operator does, as a process.
func ServiceBinary(tb testing.TB) string {
	tb.Helper()
	return Command(tb, "github.com/flashsale/flashsale/cmd/flashsale")
}

// WaitReady polls base's /readyz until it answers 200. It gives up after
// timeout, or as soon as p (when not nil) exits.
func WaitReady(base string, timeout time.Duration, p *Process) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var done <-chan struct{}
	if p != nil {
		done = p.done
	}
	for deadline := time.Now().Add(timeout); ; {
		resp, err := hc.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last: %v)", timeout, err)
		}
		select {
		case <-done:
			return errors.New("exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
