package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowBodiesHoldNoSlot checks that clients trickling a request body a
// byte a second hold no admission slot: with 300 of them connected to
// checkout, purchase and a sale read, buyers beside them keep checking out
// and purchasing, and the slots in use stay below MAX_INFLIGHT.
func TestSlowBodiesHoldNoSlot(t *testing.T) {
	const maxInFlight, slow, buyers = 8, 300, 20
	e := MustEnv(t, env{"MAX_INFLIGHT": fmt.Sprint(maxInFlight), "QUEUE_WAIT": "1s"})
	inst := MustStart(t, e)
	sale := MustCreateSale(t, inst.URL, buyers, 10*time.Minute)
	addr := strings.TrimPrefix(inst.URL, "http://")

	targets := []string{
		fmt.Sprintf("POST /checkout?user_id=slow&id=%d", sale.ID*1_000_000+1),
		"POST /purchase?code=" + strings.Repeat("A", 32),
		"GET /sales/active",
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	answered := make(chan int, slow) // statuses of the slow clients' answers
	for i := range slow {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		if _, err := fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n", targets[i%len(targets)]); err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		wg.Go(func() { // a byte a second until the server hangs up
			defer conn.Close()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := conn.Write([]byte{'x'}); err != nil {
					return
				}
			}
		})
		wg.Go(func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return // the connection closed unanswered
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		})
	}

	// Either every slow client is answered, or they fill the slots.
	slots := func() float64 { return scrapeMetrics(t, inst.URL).value("http_admission_slots_in_use", nil) }
	statuses := map[int]int{}
	deadline := time.Now().Add(60 * time.Second)
	for got := 0; got < slow; {
		select {
		case st := <-answered:
			statuses[st]++
			got++
			continue
		case <-time.After(50 * time.Millisecond):
		}
		if n := slots(); n >= maxInFlight {
			t.Errorf("the slow clients hold %v of %d admission slots", n, maxInFlight)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d slow clients answered: %v", got, slow, statuses)
		}
	}
	t.Logf("slow clients' answers %v; admission slots in use: %v of %d", statuses, slots(), maxInFlight)
	if statuses[http.StatusRequestEntityTooLarge] != slow {
		t.Errorf("slow clients answered %v, want %d× 413", statuses, slow)
	}

	// The buyers beside them are served.
	var bw sync.WaitGroup
	for i := range buyers {
		bw.Go(func() {
			user := fmt.Sprintf("buyer%d", i)
			res, st, code := checkout(t, inst.URL, user, sale.ID*1_000_000+int64(i+1))
			if st != http.StatusOK {
				t.Errorf("%s: checkout %d %s", user, st, code)
				return
			}
			if p, st, code := purchase(t, inst.URL, res.Code); st != http.StatusOK || p.TotalPurchased != 1 {
				t.Errorf("%s: purchase %d %s %+v", user, st, code, p)
			}
		})
	}
	bw.Wait()
	if n := slots(); n != 0 {
		t.Errorf("%v admission slots in use after the buyers", n)
	}
}
