package testenv

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestProxy checks the proxy itself: it forwards, adds latency each way on
// its own, and holds bytes while stalled.
func TestProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }() // echo
		}
	}()
	p := StartProxy(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func() (string, error) {
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return string(buf), err
	}
	if got, err := echo(); err != nil || got != "ping" {
		t.Fatalf("echo through the proxy: %q, %v", got, err)
	}

	p.SetLatency(50 * time.Millisecond)
	start := time.Now()
	if got, err := echo(); err != nil || got != "ping" {
		t.Fatalf("echo with latency: %q, %v", got, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond { // two hops of 50 ms
		t.Errorf("echo with 50ms latency each way took %s", d)
	}
	p.SetLatencies(0, 200*time.Millisecond)
	start = time.Now()
	if got, err := echo(); err != nil || got != "ping" {
		t.Fatalf("echo with reply latency: %q, %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("echo with 200ms reply latency took %s", d)
	}
	p.SetLatency(0)
	p.DelayNextReply(200 * time.Millisecond)
	start = time.Now()
	if got, err := echo(); err != nil || got != "ping" {
		t.Fatalf("echo with the next reply delayed: %q, %v", got, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("echo with the next reply delayed by 200ms took %s", d)
	}

	p.DropNextReply()
	if _, err := echo(); err == nil {
		t.Fatal("a reply came back after DropNextReply")
	}
	if c, err = net.Dial("tcp", p.Addr()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := echo(); err != nil || got != "ping" {
		t.Fatalf("echo on a new connection after a dropped reply: %q, %v", got, err)
	}

	p.Stall()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 4)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("read %q through a stalled proxy", buf[:n])
	}
	_ = c.SetReadDeadline(time.Time{})
	p.Resume()
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("after resume: %q, %v", buf, err)
	}
}
