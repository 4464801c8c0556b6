package postgres_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// commitCutter is a loopback proxy in front of PostgreSQL that, once armed,
// cuts the connection that sends the next COMMIT: after forwarding it (the
// server commits, the client never hears so) or before (nothing commits).
type commitCutter struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	forward bool // forward the COMMIT before cutting
	cuts    atomic.Int32
	wg      sync.WaitGroup
}

func startCommitCutter(t *testing.T, target string, forward bool) *commitCutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitCutter{ln: ln, target: target, forward: forward}
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *commitCutter) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var mute atomic.Bool
		p.wg.Add(2)
		go func() { defer p.wg.Done(); serverToClient(c, s, &mute); c.Close() }()
		go func() { defer p.wg.Done(); p.clientToServer(c, s, &mute); s.Close(); c.Close() }()
	}
}

// serverToClient forwards the server's answers until mute is set.
func serverToClient(c, s net.Conn, mute *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && !mute.Load() {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// clientToServer forwards the client's messages one by one, watching for a
// simple-protocol COMMIT.
func (p *commitCutter) clientToServer(c, s net.Conn, mute *atomic.Bool) {
	// The startup message has no type byte: a length, then the rest.
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return
	}
	body := make([]byte, binary.BigEndian.Uint32(n[:])-4)
	if _, err := io.ReadFull(c, body); err != nil {
		return
	}
	if _, err := s.Write(append(n[:], body...)); err != nil {
		return
	}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		cut := hdr[0] == 'Q' && bytes.EqualFold(bytes.TrimRight(body, "\x00; "), []byte("commit")) && p.armed.CompareAndSwap(true, false)
		if cut {
			mute.Store(true)
			if !p.forward {
				p.cuts.Add(1)
				return
			}
		}
		if _, err := s.Write(append(hdr[:], body...)); err != nil {
			return
		}
		if cut {
			p.cuts.Add(1)
			time.Sleep(200 * time.Millisecond) // the server commits; its answer is dropped below
			c.Close()
			return
		}
	}
}

// mustCutStores opens stores over a fresh database directly, and stores
// over the same database through a commitCutter.
func mustCutStores(t *testing.T, forward bool) (direct, cut *stores, cutter *commitCutter) {
	dbURL := testenv.MustDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cutter = startCommitCutter(t, u.Host, forward)
	u.Host = cutter.ln.Addr().String()
	return mustStores(t, dbURL), mustStores(t, u.String()), cutter
}

// TestAmbiguousCommitIsReadBack cuts the connection while a checkout batch's
// COMMIT is in flight: when the server committed, the checkout is answered
// as accepted (the commit was read back); when it did not, the answer is
// EUnavailable and nothing was written.
func TestAmbiguousCommitIsReadBack(t *testing.T) {
	for _, tt := range []struct {
		name      string
		forward   bool
		committed bool
	}{
		{"commit reached the server", true, true},
		{"commit never sent", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			direct, s, cutter := mustCutStores(t, tt.forward)
			sale := direct.mustSale(t, 10, 10)
			s.mustCheckout(t, sale, "warmup", 1, flashsale.NewCode(sale.ID)) // connections open
			cutter.armed.Store(true)
			code := flashsale.NewCode(sale.ID)
			add, err := s.checkout(t, sale, "alice", 2, code)
			if cutter.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d commits, want 1", cutter.cuts.Load())
			}
			rows := direct.count(t, `SELECT count(*) FROM checkout_attempts WHERE user_id = 'alice'`)
			if tt.committed {
				if err != nil || add.Code != code || rows != 1 {
					t.Fatalf("committed checkout answered %+v, %v with %d rows; want accepted into %s", add, err, rows, code)
				}
				return
			}
			if flashsale.ErrorCode(err) != flashsale.EUnavailable || rows != 0 {
				t.Fatalf("uncommitted checkout answered %+v, %v with %d rows; want %s and none", add, err, rows, flashsale.EUnavailable)
			}
		})
	}
}
