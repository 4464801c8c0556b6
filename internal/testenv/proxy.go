package testenv

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy in front of a dependency that can add
// latency to the chunks it forwards, each way on its own, and stall every
// connection: bytes read while stalled are held, new connections are
// accepted but not connected upstream, until Resume. The fault tests put it
// between the service and PostgreSQL or Redis.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu             sync.Mutex
	cond           *sync.Cond
	request, reply time.Duration // latency added towards upstream, towards the client
	nextReply      time.Duration // added once, to the next chunk towards a client
	dropReply      bool          // the next chunk towards a client is dropped with its connection
	stalled        bool
	closed         bool
	conns          map[net.Conn]struct{}
	wg             sync.WaitGroup
}

// StartProxy listens on a loopback port and forwards to upstream; it is
// closed when the test ends.
func StartProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency adds d to every chunk forwarded, both ways.
func (p *Proxy) SetLatency(d time.Duration) { p.SetLatencies(d, d) }

// SetLatencies adds request to every chunk forwarded to the upstream and
// reply to every chunk forwarded back to the client: with request 0, a
// command reaches the server at once and its reply comes late, as from a
// server that ran it and then stalled.
func (p *Proxy) SetLatencies(request, reply time.Duration) {
	p.mu.Lock()
	p.request, p.reply = request, reply
	p.mu.Unlock()
}

// DelayNextReply adds d, once, to the next chunk forwarded back to a
// client: one reply comes late, and what follows (a new connection's
// handshake, a command sent again) does not.
func (p *Proxy) DelayNextReply(d time.Duration) {
	p.mu.Lock()
	p.nextReply = d
	p.mu.Unlock()
}

// DropNextReply drops the next chunk forwarded back to a client and closes
// its connection: the request reached the server, its reply is lost.
func (p *Proxy) DropNextReply() {
	p.mu.Lock()
	p.dropReply = true
	p.mu.Unlock()
}

// Stall holds every byte and every new connection until Resume.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// Resume ends a Stall.
func (p *Proxy) Resume() {
	p.mu.Lock()
	p.stalled = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// gate waits while the proxy is stalled and returns the latency to add to
// a chunk towards the upstream (toUpstream) or the client, and whether to
// forward it at all; false once the proxy is closed.
func (p *Proxy) gate(toUpstream bool) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.stalled && !p.closed {
		p.cond.Wait()
	}
	if toUpstream {
		return p.request, !p.closed
	}
	d, drop := p.reply+p.nextReply, p.dropReply
	p.nextReply, p.dropReply = 0, false
	return d, !p.closed && !drop
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.untrack(c)
	if _, ok := p.gate(true); !ok {
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c, true) })
	wg.Go(func() { p.pipe(c, up, false) })
	wg.Wait()
}

// pipe copies src to dst through the gate; when either side ends, both are
// closed.
func (p *Proxy) pipe(dst, src net.Conn, toUpstream bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			lat, ok := p.gate(toUpstream)
			if !ok {
				return
			}
			if lat > 0 {
				time.Sleep(lat)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close closes the listener and every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
