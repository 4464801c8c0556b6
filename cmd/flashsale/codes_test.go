package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// withSale returns code with its sale prefix rewritten to saleID, the random
// part kept.
func withSale(t *testing.T, code string, saleID int64) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(code)
	if err != nil || len(b) != 24 {
		t.Fatalf("code %q: %v", code, err)
	}
	binary.BigEndian.PutUint64(b[:8], uint64(saleID))
	return base64.RawURLEncoding.EncodeToString(b)
}

// purchaseRaw purchases code and returns the status and the body as sent.
func purchaseRaw(t *testing.T, base, code string) (int, string) {
	t.Helper()
	resp, err := client.Post(base+"/purchase?code="+code, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCodesAreBoundToTheirCartAndSale checks, on PostgreSQL and Redis, that a
// checkout code buys its own cart only: guessed codes of a running sale never
// sell, a code moved to another running sale is not found there, one user's
// code buys that user's items and never another cart's, and purchasing a code
// again answers the original result without selling anything more.
func TestCodesAreBoundToTheirCartAndSale(t *testing.T) {
	e := MustEnv(t, nil)
	inst := MustStart(t, e)
	saleA := MustCreateSale(t, inst.URL, 10, 10*time.Minute)
	// Sales are named by their start second: the next one a second later.
	time.Sleep(time.Until(time.Unix(saleA.ID+1, 0)) + 10*time.Millisecond)
	saleB := MustCreateSale(t, inst.URL, 10, 10*time.Minute)
	item := func(sale int64, seq int) int64 { return flashsale.ItemID(sale, seq) }

	alice, st, ec := checkout(t, inst.URL, "alice", item(saleA.ID, 1))
	if st != http.StatusOK {
		t.Fatalf("alice's checkout: %d %s", st, ec)
	}
	bob, st, ec := checkout(t, inst.URL, "bob", item(saleA.ID, 2))
	if st != http.StatusOK {
		t.Fatalf("bob's checkout: %d %s", st, ec)
	}
	if _, st, ec := checkout(t, inst.URL, "carol", item(saleB.ID, 1)); st != http.StatusOK {
		t.Fatalf("carol's checkout: %d %s", st, ec)
	}

	// A code that names no cart is refused: not found (PostgreSQL looked it
	// up), or, once this client spent its budget of such look-ups in the
	// sale, rate-limited before any look-up.
	refused := func(st int, ec string) bool {
		return (st == http.StatusNotFound && ec == "code_not_found") || (st == http.StatusTooManyRequests && ec == "rate_limited")
	}
	// Guessed codes: well-formed codes of both running sales and of a sale
	// that does not exist. 128 random bits: none names a cart.
	limited := 0
	for i := range 200 {
		sale := []int64{saleA.ID, saleB.ID, saleA.ID + 7}[i%3]
		_, st, ec := purchase(t, inst.URL, flashsale.NewCode(sale))
		if !refused(st, ec) || (sale == saleA.ID+7 && st != http.StatusNotFound) {
			t.Fatalf("guessed code of sale %d: %d %s", sale, st, ec)
		}
		if st == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Error("200 guessed codes from one client were all looked up: no budget of unknown codes")
	}
	// Alice's code moved to sale B, which is running and has carts: refused
	// like a guess, and nothing bought in either sale.
	moved := withSale(t, alice.Code, saleB.ID)
	if _, st, ec := purchase(t, inst.URL, moved); !refused(st, ec) {
		t.Errorf("alice's code moved to sale B: %d %s", st, ec)
	}
	// A code differing from alice's in its last random bits only.
	flipped := []byte(alice.Code)
	if flipped[len(flipped)-1] == 'A' {
		flipped[len(flipped)-1] = 'B'
	} else {
		flipped[len(flipped)-1] = 'A'
	}
	if _, st, ec := purchase(t, inst.URL, string(flipped)); !refused(st, ec) {
		t.Errorf("a code one character off alice's: %d %s", st, ec)
	}

	// Alice's code buys alice's item, for alice, and not bob's.
	st1, body1 := purchaseRaw(t, inst.URL, alice.Code)
	if st1 != http.StatusOK {
		t.Fatalf("alice's purchase: %d %s", st1, body1)
	}
	db := testenv.MustOpenSQL(t, e["DATABASE_URL"])
	soldTo := func(id int64) string {
		t.Helper()
		var u *string
		if err := db.QueryRowContext(context.Background(), `SELECT sold_to_user_id FROM items WHERE id = $1`, id).Scan(&u); err != nil {
			t.Fatal(err)
		}
		if u == nil {
			return ""
		}
		return *u
	}
	if got := soldTo(item(saleA.ID, 1)); got != "alice" {
		t.Errorf("alice's item sold to %q", got)
	}
	if got := soldTo(item(saleA.ID, 2)); got != "" {
		t.Errorf("bob's item sold to %q by alice's code", got)
	}
	// Replaying it answers the very same result and sells nothing more.
	for range 3 {
		if st, body := purchaseRaw(t, inst.URL, alice.Code); st != st1 || body != body1 {
			t.Errorf("replay: %d %s, want %d %s", st, body, st1, body1)
		}
	}
	// Bob's code buys bob's item only.
	if r, st, ec := purchase(t, inst.URL, bob.Code); st != http.StatusOK || r.TotalPurchased != 1 {
		t.Fatalf("bob's purchase: %d %s %+v", st, ec, r)
	}
	if got := soldTo(item(saleA.ID, 2)); got != "bob" {
		t.Errorf("bob's item sold to %q", got)
	}
	var purchases, carts int
	if err := db.QueryRowContext(context.Background(), `SELECT (SELECT count(*) FROM purchases), (SELECT count(*) FROM carts WHERE state = 'purchased')`).Scan(&purchases, &carts); err != nil {
		t.Fatal(err)
	}
	if purchases != 2 || carts != 2 {
		t.Errorf("%d purchases of %d carts, want 2 of 2: guesses or replays wrote something", purchases, carts)
	}
	for _, s := range []int64{saleA.ID, saleB.ID} {
		checkInvariants(t, db, s)
	}
}
